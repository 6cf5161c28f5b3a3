"""Unit tests run in pytest's own process alone: no database, no other process, no network.

That is what keeps `make test-fast` under a minute. Each unit test's setup, call and teardown run
with process creation (subprocess, multiprocessing, fork, spawn) and IP sockets refused, and a unit
test that uses the PostgreSQL server fails before it starts. A test that needs any of them belongs
in tests/integration (marked `db` or `slow`) or tests/e2e.
"""

from __future__ import annotations

import _posixsubprocess
import contextlib
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer

WHERE_IT_BELONGS = "move it to tests/integration (marked db or slow) or tests/e2e"


class OutsideTheUnitError(RuntimeError):
    """A unit test reached for a process, the network or the database."""


def _refuse(what: str, reached: list[str]) -> Callable[..., Any]:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        reached.append(what)
        raise OutsideTheUnitError(f"a unit test {what}: {WHERE_IT_BELONGS}")

    return refuse


def _refuse_ip(original: Callable[..., Any], what: str, reached: list[str]) -> Callable[..., Any]:
    """The socket method, refused for IPv4 and IPv6 sockets (a socketpair or Unix socket stays local)."""

    def guarded(self: socket.socket, *args: Any, **kwargs: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            return _refuse(what, reached)()
        return original(self, *args, **kwargs)

    return guarded


@pytest.fixture(scope="package", autouse=True)
def _one_boto3_session() -> Iterator[None]:
    """By default each moto mock starts with a new boto3 session, which loads botocore's service
    models again, a cost several hundred unit tests pay. In tests/unit the session is kept: each mock
    still starts with empty backends and moto's fake credentials."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(default_user_config["core"], "reset_boto3_session", False)
        yield


#: What the test of the phase running reached for (tests/unit/test_unit_boundary.py reads it).
REACHED = pytest.StashKey[list[str]]()


@contextlib.contextmanager
def _inside_the_unit(item: pytest.Item) -> Iterator[None]:
    """Refuse every way out of the process during one phase of a test. What was reached for is kept,
    so that a refusal the code under test caught and swallowed still fails the test."""
    reached: list[str] = []
    item.stash[REACHED] = reached
    with pytest.MonkeyPatch.context() as patch:
        # subprocess (its own reference) and multiprocessing's spawn and forkserver start processes
        # through fork_exec.
        patch.setattr(subprocess, "_fork_exec", _refuse("started a process", reached))
        patch.setattr(_posixsubprocess, "fork_exec", _refuse("started a process", reached))
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
            if hasattr(os, name):
                patch.setattr(os, name, _refuse(f"started a process (os.{name})", reached))
        # Its start waits for a server thread that could not bind: refused before it waits.
        patch.setattr(ThreadedMotoServer, "start", _refuse("started moto's server", reached))
        for name in ("connect", "connect_ex", "bind"):
            original = getattr(socket.socket, name)
            patch.setattr(
                socket.socket, name, _refuse_ip(original, f"opened a network socket ({name})", reached)
            )
        yield
    if reached:
        raise OutsideTheUnitError(f"a unit test {reached[0]}: {WHERE_IT_BELONGS}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    if "postgres_server" in getattr(item, "fixturenames", ()):
        raise OutsideTheUnitError(f"a unit test uses the PostgreSQL server: {WHERE_IT_BELONGS}")
    with _inside_the_unit(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _inside_the_unit(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    if nextitem is None:
        # The session's end: the session's fixtures (the PostgreSQL server an integration test
        # started) are torn down here too, and stopping them takes a process.
        return (yield)
    with _inside_the_unit(item):
        return (yield)
