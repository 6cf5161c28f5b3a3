"""What the local engine records of every invocation: seconds, errors and, on request, memory.

Every handler call is recorded (function, start, seconds, error) and passed to an optional
callback. With `measure_memory` each record of an invocation run in the engine's own process also
holds the process's resident memory at the start and its peak during the invocation: the
kernel's peak counter (VmHWM) is reset at the start (writing "5" to /proc/self/clear_refs) and read
at the end. Invocations that overlap (the DISTRIBUTED Map's items run in threads) share one process
and one counter: a reset first folds the current peak into every invocation still running, so each
record's peak is the process's peak over its own interval, other invocations' memory included;
`concurrent` says how many were in flight at most. Off by default because the reset also lowers
what `getrusage` reports as the process's maximum. Without /proc (macOS) the memory fields are None.

An invocation in the sandbox brings its own figures: its process's peak (the memory cgroup's
maximum where there is one), its imports included and moto's storage excluded. That is the figure
to compare with a function's memory setting.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .bootstrap import status_bytes

PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class Invocation:
    """One handler call made by the local engine."""

    function: str  # the function's name, e.g. "recommender-predict"
    started: float  # time.monotonic() when the handler was called
    seconds: float
    error: str | None  # the exception's class name when the handler raised
    rss_start_bytes: int | None  # the process's resident memory at the start (measure_memory)
    peak_bytes: int | None  # the process's peak resident memory during the call (measure_memory)
    concurrent: int  # the most invocations in flight at once during this one, itself included
    cpu_seconds: float | None = None  # sandboxed invocations: the CPU time of the handler's process

    @property
    def growth_bytes(self) -> int | None:
        """How far the process's peak rose above its resident memory at the start."""
        if self.peak_bytes is None or self.rss_start_bytes is None:
            return None
        return self.peak_bytes - self.rss_start_bytes


def memory_status() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process, in bytes; 0 where /proc does not say."""
    return status_bytes("VmRSS") or 0, status_bytes("VmHWM") or 0


def reset_peak() -> None:
    PROC_CLEAR_REFS.write_text("5")  # resets VmHWM to the current VmRSS (Linux >= 4.0)


def peak_counter_available() -> bool:
    """Whether this process can reset and read its peak resident memory (Linux /proc)."""
    try:
        reset_peak()
        return memory_status()[1] > 0
    except OSError:
        return False


@dataclass
class _Open:
    function: str
    started: float
    rss_start: int | None
    peak: int
    concurrent: int = 1


class Recorder:
    """Records every invocation; see the module docstring."""

    def __init__(self, measure_memory: bool, on_invoke: Callable[[Invocation], None] | None) -> None:
        self.memory = measure_memory and peak_counter_available()
        self.on_invoke = on_invoke
        self.records: list[Invocation] = []
        self._lock = threading.Lock()
        self._open: dict[object, _Open] = {}

    def begin(self, function: str, measure: bool = True) -> object:
        """Start a record; with `measure=False` the caller brings the memory figures to `end`."""
        token = object()
        with self._lock:
            rss: int | None = None
            if self.memory and measure:
                if self._open:  # keep the running invocations' peaks before the reset
                    peak = memory_status()[1]
                    for running in self._open.values():
                        running.peak = max(running.peak, peak)
                reset_peak()
                rss = memory_status()[0]
            self._open[token] = _Open(function, time.monotonic(), rss, rss or 0)
            for running in self._open.values():
                running.concurrent = max(running.concurrent, len(self._open))
        return token

    def end(
        self,
        token: object,
        error: str | None,
        memory: tuple[int | None, int | None] | None = None,
        cpu_seconds: float | None = None,
    ) -> Invocation:
        """Close a record; `memory` is (start, peak) measured elsewhere (a sandboxed process)."""
        with self._lock:
            ended = time.monotonic()
            call = self._open.pop(token)
            if memory is not None:
                call.rss_start, peak = memory
            else:
                peak = max(call.peak, memory_status()[1]) if self.memory else None
            record = Invocation(
                function=call.function,
                started=call.started,
                seconds=ended - call.started,
                error=error,
                rss_start_bytes=call.rss_start,
                peak_bytes=peak,
                concurrent=call.concurrent,
                cpu_seconds=cpu_seconds,
            )
            self.records.append(record)
        if self.on_invoke is not None:
            try:
                self.on_invoke(record)
            except Exception as failure:  # an observer never fails the run
                warnings.warn(f"on_invoke raised {failure!r}", RuntimeWarning, stacklevel=1)
        return record
