"""How the whole workflow scales: seconds and peak memory of every step at 1M, 5M (and 25M) ratings.

    .venv/bin/python benchmarks/scaling.py                                # 1M and 5M ratings
    .venv/bin/python benchmarks/scaling.py --sizes 1e6,5e6,25e6 --json scaling.json
    .venv/bin/python benchmarks/scaling.py --sizes 1e6 --algorithm auto   # an explicit algorithm
    .venv/bin/python benchmarks/scaling.py --sizes 25e6 --pg-data-dir /work/pg25m  # already loaded
    .venv/bin/python benchmarks/scaling.py --sizes 25e6 --database-url postgresql://...  # the same
    .venv/bin/python benchmarks/scaling.py --sizes 25e6 --pg-data-dir /work/pg25m --include small.json
        # 25M run, shown with the 1M and 5M sizes of an earlier run's --json small.json

Each size runs the real state machine (statemachine/recommender.asl.json on moto's Step Functions
engine) with the product's default algorithm (the input has no `algorithm`; --algorithm names one)
at its default parameters and the run's default `evaluate` (Train measures a holdout split, then
fits on every rating). The local engine records each Lambda invocation's seconds and memory.

Quality, per size, from the published run's manifest: the algorithm published (with `auto`, the
one it chose, and every candidate's NDCG@k on Train's split), the model's NDCG@10 on Train's
holdout (`quality.model`) and the most-popular baseline's on the same split (`quality.popularity`),
their ratio and `quality.below_popularity`. Above EVALUATION_MAX_RATINGS both are measured on
Train's sample of users, fitted on the sample's training ratings (recommender/evaluation.py).

By default every invocation runs in the Lambda sandbox, a fresh process as a cold Lambda would
start one (`LocalEngine(sandbox=True)`: the function's memory cap and timeout from template.yaml,
a read-only file system, only the layers on the path, S3 reached over HTTP through moto's server):
- "peak": that process's peak resident memory, its imports included and moto's storage excluded:
  the figure to compare with a function's memory setting;
- "growth": that peak minus the process's resident memory once the handler was imported (the
  step's own work).
Each invocation pays its imports (about a second), as a cold start does; a warm Lambda would not.

With --in-process the handlers run in this process's threads, as `recommender demo` does
(`LocalEngine(measure_memory=True)`), and the table also gets CPU seconds per step:
- "peak": the process's peak resident memory during the invocation (the kernel's VmHWM, reset when
  the invocation starts). It includes what the process already held: Python, the libraries, moto's
  in-memory S3 (the snapshot, the model, the shards written so far) and anything earlier steps
  left allocated. An upper bound of the step's own need, plus the imports a Lambda has too.
- "growth": that peak minus the resident memory at the invocation's start: the step's own
  allocations. A lower bound when the step reuses memory an earlier step freed but kept.
A Lambda runs each step in its own process, so its need lies between the two (growth + a fresh
interpreter's imports, about the "rss before run" line). Predictor shards run `--max-concurrency`
at once in threads of one process: with more than 1, a shard's peak also counts the shards
overlapping it (the table shows how many did). The default, 1, gives each shard's own figures.

Seconds are wall time, so other programs sharing the cores slow them down: the table also gives
the CPU seconds this process spent in each step, which hardly change with that load, and the load
average around each run.

Every size runs in a fresh child process, so no size inherits another's memory.

Data shape. MovieLens 25M has 162,541 users, 59,047 rated items and 25,000,095 ratings. Each size
scales that shape down: users in proportion to ratings (MovieLens's releases keep about 150
ratings per user at every size: ml-1m 165, ml-10m 143, ml-20m 144, ml-25m 154) and items in
proportion to ratings ** --item-exponent (default 1: ~423 ratings per item at every size, the
density falling as 1/size, from 6.5% at 1M to 0.26% at 25M; ml-1m → ml-25m grew its catalogue as
ratings ** 0.86). So 1M ratings are 6,480 users x 2,360 items, and 25M are MovieLens 25M's shape
rounded, 162,000 users x 59,000 items (as `recommender load --synthetic` prepares it). Ratings come
from `recommender.sample_data`'s block generator (latent tastes, long-tail popularity, log-normal
user activity), exactly the number asked for.
Predicting scores every user against the whole catalogue, so its work grows as users x items:
25x the ratings means 625x the pairs at this shape.

Shards hold a fixed `--users-per-shard` users (default 2,000), as a deployment would set them
from Lambda's time and memory limits: their count grows with the users, a shard's cost only with
the catalogue.

Prints a table (per step: seconds, peak and growth, per size; then each column's growth between
consecutive sizes as a ratio and as the exponent b of `value ∝ ratings ** b`) and, with --json, writes
the figures (format in `report()` below).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Any

from recommender import local, sample_data
from recommender.config import SourceTable
from recommender.database import connect
from recommender.local import Invocation, LocalEngine, embedded_postgres, project_root
from recommender.local.bootstrap import status_bytes

REFERENCE = {"users": 162_000, "items": 59_000, "ratings": 25_000_000}  # MovieLens 25M, rounded
MIB = 1024 * 1024
STEPS = {  # invocation function name -> step
    "recommender-extract": "extract",
    "recommender-train": "train",
    "recommender-predict": "predict",
    "recommender-merge": "merge",
    "recommender-record_failure": "record_failure",
}


def shape(ratings: int, item_exponent: float) -> tuple[int, int, float]:
    """(users, items, mean ratings per user) of MovieLens 25M scaled down to `ratings`."""
    scale = ratings / REFERENCE["ratings"]
    users = max(10, round(REFERENCE["users"] * scale))
    items = max(10, round(REFERENCE["items"] * scale**item_exponent))
    return users, items, ratings / users


def rss_bytes() -> int | None:
    return status_bytes("VmRSS")


def load_synthetic(url: str, ratings: int, item_exponent: float, seed: int, table: SourceTable) -> int:
    """Generate and COPY the size's ratings (`recommender load --synthetic` does the same);
    returns the rows loaded: exactly `ratings`, or about as many for sizes below ~1M, where this
    shape asks more of a user than the generator allows (half the catalogue at most)."""
    users, items, per_user = shape(ratings, item_exponent)
    try:
        spec = sample_data.SyntheticSpec.with_total(
            users, items, ratings, seed=seed, **sample_data.calibrated(items)
        )
    except ValueError:
        spec = sample_data.SyntheticSpec(
            users, items, max(1, round(per_user)), seed=seed, **sample_data.calibrated(items)
        )
    with closing(connect(url, "recommender-benchmark", readonly=False)) as conn:
        return int(sample_data.load_synthetic(conn, spec, table))


@contextmanager
def database(args: argparse.Namespace, ratings: int, say: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    """The size's database: the given URL as it is, or an embedded server loaded with synthetic data."""
    if args.database_url:
        yield {"url": args.database_url, "source": "given", "load_seconds": None, "loaded_rows": None}
        return
    if args.pg_data_dir:
        say(f"starting the embedded PostgreSQL on {args.pg_data_dir} (already loaded) ...")
        with embedded_postgres(args.pg_data_dir) as url:
            yield {"url": url, "source": str(args.pg_data_dir), "load_seconds": None, "loaded_rows": None}
        return
    with embedded_postgres() as url:
        source = SourceTable(table=args.table, timestamp_column=args.timestamp_column or None)
        users, items, _ = shape(ratings, args.item_exponent)
        say(f"loading ~{ratings:,} synthetic ratings ({users:,} users x {items:,} items) ...")
        started = time.perf_counter()
        rows = load_synthetic(url, ratings, args.item_exponent, args.seed, source)
        seconds = time.perf_counter() - started
        say(f"loaded {rows:,} rows in {seconds:.1f} s")
        yield {"url": url, "source": "synthetic", "load_seconds": seconds, "loaded_rows": rows}


def summarise(records: list[Invocation]) -> dict[str, Any]:
    """One step's invocations: seconds (sum and slowest), memory (the worst invocation)."""
    peaks = [r.peak_bytes for r in records if r.peak_bytes is not None]
    growths = [r.growth_bytes for r in records if r.growth_bytes is not None]
    starts = [r.rss_start_bytes for r in records if r.rss_start_bytes is not None]
    return {
        "invocations": len(records),
        "errors": sum(r.error is not None for r in records),
        "seconds": sum(r.seconds for r in records),
        "slowest_seconds": max(r.seconds for r in records),
        "peak_bytes": max(peaks) if peaks else None,
        "growth_bytes": max(growths) if growths else None,
        "rss_start_bytes": min(starts) if starts else None,
        "concurrent": max(r.concurrent for r in records),
    }


def state_seconds(events: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float], float | None]:
    """Seconds of each top-level state and of the execution, as the engine's history saw them."""
    entered: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    started = ended = None
    for event in events:
        event_type, at = event["type"], event["timestamp"]
        if event_type == "ExecutionStarted":
            started = at
        elif event_type in ("ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"):
            ended = at
        elif event_type.endswith("StateEntered"):
            entered[event["stateEnteredEventDetails"]["name"]] = at
        elif event_type.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            if name in entered:
                seconds[name] = (at - entered[name]).total_seconds()
    wall = (ended - started).total_seconds() if started and ended else None
    return seconds, wall


def time_cpu_of_handlers() -> dict[str, list[float]]:
    """The CPU seconds of this process (all its threads: BLAS's too) during each handler call,
    per step. Unlike seconds, they hardly change when other programs share the cores; they miss
    what PostgreSQL's server process does for Extract, and with more than one predictor at once
    each shard's figure includes the others'."""
    cpu: dict[str, list[float]] = {}

    def timed(handler: local.Handler, step: str) -> local.Handler:
        def call(event: dict[str, Any], context: Any) -> Any:
            started = time.process_time()
            try:
                return handler(event, context)
            finally:
                cpu.setdefault(step, []).append(time.process_time() - started)

        return call

    for name, handler in list(local._handlers.items()):
        local._handlers[name] = timed(handler, STEPS.get(name, name))
    return cpu


def run_size(args: argparse.Namespace, ratings: int) -> dict[str, Any]:
    """Load (unless given a database) and run the workflow once at this size, in this process."""
    label = human(ratings)

    def say(text: str) -> None:  # one write per line: predictor threads report concurrently
        sys.stdout.write(f"  [{label}] {text}\n")
        sys.stdout.flush()

    def on_invoke(call: Invocation) -> None:
        memory = (
            f", peak {call.peak_bytes / MIB:,.0f} MiB (+{call.growth_bytes / MIB:,.0f} over its start)"
            if call.peak_bytes is not None and call.growth_bytes is not None
            else ""
        )
        error = f" FAILED ({call.error})" if call.error else ""
        overlap = f", {call.concurrent} invocations at once" if call.concurrent > 1 else ""
        say(f"{call.function}: {call.seconds:.2f} s{memory}{overlap}{error}")

    run_input: dict[str, Any] = {
        **({"algorithm": args.algorithm} if args.algorithm else {}),
        "users_per_shard": args.users_per_shard,
        "max_concurrency": args.max_concurrency,
        "source": {"table": args.table},
    }
    if args.timestamp_column:
        run_input["source"]["timestamp_column"] = args.timestamp_column
    with ExitStack() as stack:
        db = stack.enter_context(database(args, ratings, say))
        engine = stack.enter_context(
            LocalEngine(
                db["url"], measure_memory=args.in_process, on_invoke=on_invoke, sandbox=not args.in_process
            )
        )
        cpu = time_cpu_of_handlers()
        gc.collect()
        load_before = os.getloadavg()
        rss_before = rss_bytes()
        say(f"running the state machine (input {json.dumps(run_input)}) ...")
        result = engine.run(run_input, name=f"scaling-{label}")
        if result.status != "SUCCEEDED":
            raise SystemExit(f"[{label}] the run {result.status}: {result.error}: {result.cause}")
        events = engine.sfn.get_execution_history(executionArn=result.execution_arn, maxResults=1000)[
            "events"
        ]
        if not result.output:
            raise SystemExit(f"[{label}] the run succeeded without an output")
        manifest_key = result.output["published"]["manifest_key"]
        manifest = json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=manifest_key)["Body"].read())
        meta_key = f"{engine.prefix}/{manifest['model']['metadata_key']}"
        model_meta = json.loads(engine.s3.get_object(Bucket=engine.bucket, Key=meta_key)["Body"].read())
        records = list(engine.invocations)
        memory = engine.memory_measured
    states, execution_wall = state_seconds(events)
    first = min(r.started for r in records)
    by_step: dict[str, list[Invocation]] = {}
    for record in records:
        by_step.setdefault(STEPS.get(record.function, record.function), []).append(record)
    steps = {step: summarise(calls) for step, calls in by_step.items()}
    if "train" in steps:
        steps["train"].update(train_breakdown(model_meta))
    for record in records:  # isolated invocations measured their own process's CPU time
        if record.cpu_seconds is not None:
            cpu.setdefault(STEPS.get(record.function, record.function), []).append(record.cpu_seconds)
    for name, seconds in cpu.items():
        steps[name]["cpu_seconds"] = sum(seconds)
        steps[name]["slowest_cpu_seconds"] = max(seconds)
    predict = steps.get("predict")
    if predict is not None:
        predict["map_wall_seconds"] = next(
            (s for name, s in states.items() if name.startswith("Recommend for every shard")), None
        )
        predict["max_concurrency"] = args.max_concurrency
    return {
        "target_ratings": ratings,
        "ratings": manifest["dataset"]["rows"],
        "users": manifest["model"]["users"],
        "items": manifest["model"]["items"],
        "shards": len(manifest["shards"]),
        "data": {k: v for k, v in db.items() if k != "url"},
        "memory_measured": memory,
        "rss_before_run_bytes": rss_before,
        "load_average": {"before": load_before[0], "after": os.getloadavg()[0]},
        "wall_seconds": result.seconds,
        "execution_seconds": execution_wall,
        "steps": steps,
        "states": states,
        "handler_timings": manifest["timings"],
        "quality": manifest.get("quality", {}).get("model") if manifest.get("quality") else None,
        "ranking": ranking_quality(manifest),
        "invocations": [
            {
                "function": r.function,
                "start": round(r.started - first, 4),
                "seconds": round(r.seconds, 4),
                "rss_start_bytes": r.rss_start_bytes,
                "peak_bytes": r.peak_bytes,
                "concurrent": r.concurrent,
                "error": r.error,
            }
            for r in sorted(records, key=lambda r: r.started)
        ],
    }


def train_breakdown(model_meta: Mapping[str, Any]) -> dict[str, Any]:
    """Where Train's time goes: the final fit, the evaluation's own fit and, with auto, its
    candidates' whole measurements (fit and scoring, the winner's included), summed."""
    quality = model_meta.get("quality") or {}
    out = {
        "fit_seconds": model_meta.get("fit_seconds"),
        "evaluation_seconds": (quality.get("model") or {}).get("seconds"),
    }
    choice = model_meta.get("choice")
    if choice:
        out["choice_seconds"] = sum(c["seconds"] for c in choice["candidates"])
    return out


def ranking_quality(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What the published run's manifest says of its lists against popularity's, on Train's holdout:
    {"algorithm" (published), "requested" (the input's), "k", "ndcg", "popularity_ndcg", "ratio",
     "below_popularity", "sampled", "choice" (auto's record, or null)}; the figures are null when
    the run was not measured."""
    quality = manifest.get("quality") or {}
    k = int(quality.get("k") or manifest["config"].get("top_n", 10))
    ndcg = (quality.get("model") or {}).get(f"ndcg@{k}")
    popularity = (quality.get("popularity") or {}).get(f"ndcg@{k}")
    return {
        "algorithm": manifest["model"]["algorithm"],
        "requested": manifest["config"].get("algorithm"),
        "k": k,
        "ndcg": ndcg,
        "popularity_ndcg": popularity,
        "ratio": (quality.get("against_popularity") or {}).get("ratio"),
        "below_popularity": quality.get("below_popularity"),
        "sampled": (quality.get("sample") or {}).get("sampled"),
        "choice": manifest["model"].get("choice"),
    }


# --- the table -----------------------------------------------------------------------------------


def step(name: str, key: str) -> Callable[[dict[str, Any]], float | None]:
    def get(size: dict[str, Any]) -> float | None:
        value = size["steps"].get(name, {}).get(key)
        return None if value is None else float(value)

    return get


def top(key: str) -> Callable[[dict[str, Any]], float | None]:
    def get(size: dict[str, Any]) -> float | None:
        value = size.get(key)
        return None if value is None else float(value)

    return get


SECONDS: list[tuple[str, str, Callable[[dict[str, Any]], float | None]]] = [
    ("extract_seconds", "Extract", step("extract", "seconds")),
    ("train_seconds", "Train (holdout evaluation + final fit)", step("train", "seconds")),
    ("train_fit_seconds", "  of which the final fit", step("train", "fit_seconds")),
    ("train_evaluation_seconds", "  of which the evaluation", step("train", "evaluation_seconds")),
    ("train_choice_seconds", "  of which auto's candidates", step("train", "choice_seconds")),
    ("predict_slowest_shard_seconds", "Predict: slowest shard", step("predict", "slowest_seconds")),
    ("predict_sum_seconds", "Predict: sum of all shards", step("predict", "seconds")),
    ("predict_map_wall_seconds", "Predict: the Map state, wall", step("predict", "map_wall_seconds")),
    ("merge_seconds", "Merge (verify and publish)", step("merge", "seconds")),
    ("run_wall_seconds", "Whole run, wall", top("execution_seconds")),
]
MEMORY: list[tuple[str, str, Callable[[dict[str, Any]], float | None]]] = [
    (f"{name}_{measure}_bytes", f"{label}: {measure}", step(name, f"{measure}_bytes"))
    for name, label in (
        ("extract", "Extract"),
        ("train", "Train"),
        ("predict", "Predict (worst shard)"),
        ("merge", "Merge"),
    )
    for measure in ("peak", "growth")
]
CPU: list[tuple[str, str, Callable[[dict[str, Any]], float | None]]] = [
    ("extract_cpu_seconds", "Extract (PostgreSQL's work not included)", step("extract", "cpu_seconds")),
    ("train_cpu_seconds", "Train", step("train", "cpu_seconds")),
    ("predict_slowest_shard_cpu_seconds", "Predict: slowest shard", step("predict", "slowest_cpu_seconds")),
    ("predict_sum_cpu_seconds", "Predict: sum of all shards", step("predict", "cpu_seconds")),
    ("merge_cpu_seconds", "Merge", step("merge", "cpu_seconds")),
]
COLUMNS = SECONDS + CPU + MEMORY


def human(ratings: float) -> str:
    return f"{ratings / 1e6:g}M" if ratings >= 1e6 else f"{ratings / 1e3:g}k"


def growth(sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each column's ratio between consecutive sizes, and the exponent b of value ∝ ratings ** b."""
    out = []
    for a, b in itertools.pairwise(sizes):
        scale = b["ratings"] / a["ratings"]
        columns: dict[str, dict[str, float | None]] = {}
        for key, _label, get in COLUMNS:
            va, vb = get(a), get(b)
            if va is None or vb is None or va <= 0 or vb <= 0:
                columns[key] = {"ratio": None, "exponent": None}
                continue
            ratio = vb / va
            exponent = math.log(ratio) / math.log(scale) if scale != 1 else None
            columns[key] = {"ratio": ratio, "exponent": exponent}
        out.append(
            {
                "from": a["target_ratings"],
                "to": b["target_ratings"],
                "ratings_ratio": scale,
                "columns": columns,
            }
        )
    return out


def print_table(report: dict[str, Any]) -> None:
    sizes = report["sizes"]
    settings = report["settings"]
    width = 12
    head = "".join(f"{human(s['target_ratings']):>{width}}" for s in sizes)
    grow = "".join(f"{human(g['from']) + '→' + human(g['to']):>{width + 8}}" for g in report["growth"])
    print(
        f"\nWorkflow scaling: {settings['algorithm']} (default params), evaluate on,"
        f" {settings['users_per_shard']:,} users per"
        f" shard, Map max_concurrency {settings['max_concurrency']},"
        + (" one process per invocation" if settings.get("isolated") else " handlers in one process")
    )
    print(f"  {'':<40}{head}")
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("ratings (extracted)", lambda s: f"{s['ratings']:,}"),
        ("users", lambda s: f"{s['users']:,}"),
        ("items", lambda s: f"{s['items']:,}"),
        ("shards", lambda s: f"{s['shards']:,}"),
        ("predicted pairs (users x items, M)", lambda s: f"{s['users'] * s['items'] / 1e6:,.1f}"),
        (
            "loading the data (not in the run), s",
            lambda s: "given" if s["data"]["load_seconds"] is None else f"{s['data']['load_seconds']:.1f}",
        ),
        ("rss before the run, MiB", lambda s: mib(s["rss_before_run_bytes"])),
        ("most shards running at once", lambda s: str(s["steps"].get("predict", {}).get("concurrent", "-"))),
        (
            "load average before / after the run",
            lambda s: f"{s['load_average']['before']:.1f} / {s['load_average']['after']:.1f}",
        ),
    ]
    for label, fmt in rows:
        print(f"  {label:<40}" + "".join(f"{fmt(s):>{width}}" for s in sizes))
    print_quality(sizes, head, width)

    def block(title: str, columns: list[Any], fmt: Callable[[float | None], str]) -> None:
        print(f"\n  {title:<40}{head}{grow}")
        for key, label, get in columns:
            line = f"  {label:<40}" + "".join(f"{fmt(get(s)):>{width}}" for s in sizes)
            for g in report["growth"]:
                c = g["columns"][key]
                text = "-" if c["ratio"] is None else f"{c['ratio']:.1f}x (b={c['exponent']:.2f})"
                line += f"{text:>{width + 8}}"
            print(line)

    block("seconds", SECONDS, lambda v: "-" if v is None else f"{v:,.2f}")
    block("CPU seconds of the handlers", CPU, lambda v: "-" if v is None else f"{v:,.2f}")
    block("memory, MiB (peak / growth over start)", MEMORY, lambda v: mib(v))
    print(f"\n  {'seconds per million ratings':<40}{head}")
    for _key, label, get in SECONDS:
        values = [(get(s), s["ratings"] / 1e6) for s in sizes]
        cells = ["-" if v is None else f"{v / millions:,.2f}" for v, millions in values]
        print(f"  {label:<40}" + "".join(f"{cell:>{width}}" for cell in cells))
    print(
        (
            "\n  peak: the peak resident memory of the invocation's own process, imports included;"
            "\n  growth: that peak above its resident memory once the handler was imported."
            if settings.get("isolated")
            else "\n  peak: the process's peak resident memory during the step (moto's S3 and earlier"
            " steps included);\n  growth: that peak above the step's starting RSS (its own allocations)."
        )
        + " b: value ∝ ratings ** b."
    )


def print_quality(sizes: list[dict[str, Any]], head: str, width: int) -> None:
    """The published model against popularity, per size (sizes from an older --json have none)."""

    def figure(key: str, digits: int = 4) -> Callable[[dict[str, Any]], str]:
        def get(size: dict[str, Any]) -> str:
            value = (size.get("ranking") or {}).get(key)
            return "-" if value is None else f"{value:.{digits}f}"

        return get

    def below(size: dict[str, Any]) -> str:
        value = (size.get("ranking") or {}).get("below_popularity")
        return "-" if value is None else ("YES" if value else "no")

    k = next((s["ranking"]["k"] for s in sizes if s.get("ranking")), 10)
    print(f"\n  {'quality on Train holdout (manifest)':<40}{head}")
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("algorithm published", lambda s: str((s.get("ranking") or {}).get("algorithm", "-"))),
        (f"NDCG@{k}, the published model", figure("ndcg")),
        (f"NDCG@{k}, popularity", figure("popularity_ndcg")),
        ("model / popularity", figure("ratio", 2)),
        ("below popularity", below),
    ]
    for label, fmt in rows:
        print(f"  {label:<40}" + "".join(f"{fmt(s):>{width}}" for s in sizes))
    for size in sizes:
        choice = (size.get("ranking") or {}).get("choice")
        if choice:
            measured = ", ".join(
                f"{c['algorithm']} "
                + (
                    f"{c['ndcg']:.4f} in {c['seconds']:.1f} s"
                    if c.get("ndcg") is not None
                    else str(c.get("skipped") or c.get("error"))
                )
                for c in choice["candidates"]
            )
            print(
                f"  auto at {human(size['target_ratings'])}: chose {choice['chosen']}; NDCG@{k}: {measured}"
            )


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:,.0f}"


# --- the run -------------------------------------------------------------------------------------


def git_revision() -> str | None:
    root = project_root()
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+uncommitted" if dirty else "")


def report(args: argparse.Namespace, sizes: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON written by --json:
    {"benchmark": "scaling", "revision", "machine": {...}, "settings": {...},
     "sizes": [{"target_ratings", "ratings", "users", "items", "shards", "data": {"source",
                "load_seconds", "loaded_rows"}, "memory_measured", "rss_before_run_bytes",
                "load_average": {"before", "after"} (1-minute, of the machine),
                "wall_seconds" (start_execution until the poll saw it end),
                "execution_seconds" (the history's ExecutionStarted to its end: the table's wall),
                "steps": {"extract"|"train"|"predict"|"merge": {"invocations", "errors", "seconds"
                          (sum), "slowest_seconds", "peak_bytes" (max), "growth_bytes" (max),
                          "rss_start_bytes" (min), "concurrent" (max), "cpu_seconds" (sum),
                          "slowest_cpu_seconds"; train also "fit_seconds", "evaluation_seconds"
                          (the evaluation's fit) and, with auto, "choice_seconds" (its
                          candidates' measurements, summed); predict also "map_wall_seconds",
                          "max_concurrency"}},
                "states": {state name: seconds}, "handler_timings": the manifest's timings,
                "quality": the manifest's model quality, "ranking": `ranking_quality` (the
                published model's NDCG@k and popularity's), "invocations": [{"function", "start"
                (seconds after the first), "seconds", "rss_start_bytes", "peak_bytes",
                "concurrent", "error"}]}],
     "growth": [{"from", "to", "ratings_ratio", "columns": {column: {"ratio", "exponent"}}}]}
    Bytes and seconds throughout; a column is one of the table's rows (SECONDS and MEMORY below),
    "exponent" is b in value ∝ ratings ** b between the two sizes (extracted ratings).
    """
    try:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory_bytes = None
    return {
        "benchmark": "scaling",
        "revision": git_revision(),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_bytes": memory_bytes,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "algorithm": args.algorithm or "the default",
            "params": {},
            "evaluate": True,
            "users_per_shard": args.users_per_shard,
            "max_concurrency": args.max_concurrency,
            "isolated": not args.in_process,
            "item_exponent": args.item_exponent,
            "seed": args.seed,
            "reference": REFERENCE,
            "database_given": bool(args.database_url or args.pg_data_dir),
        },
        "sizes": sizes,
        "growth": growth(sizes),
    }


def parse_sizes(text: str) -> list[int]:
    sizes = [int(float(part)) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) < 1000:
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: give ratings counts such as 1e6,5e6")
    return sorted(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=parse_sizes, default=[1_000_000, 5_000_000], help="default 1e6,5e6")
    parser.add_argument(
        "--database-url",
        help="a database whose table already holds the ratings (one size only): nothing is loaded",
    )
    parser.add_argument(
        "--pg-data-dir",
        type=Path,
        help="an embedded PostgreSQL data directory whose table already holds the ratings (one size only)",
    )
    parser.add_argument(
        "--algorithm",
        help="the run's `algorithm` (e.g. auto, SVD); default: none given, the product's default",
    )
    parser.add_argument("--table", default="ratings")
    parser.add_argument(
        "--timestamp-column", default="rated_at", help="default rated_at; '' for a table without one"
    )
    parser.add_argument("--users-per-shard", type=int, default=2000)
    parser.add_argument("--max-concurrency", type=int, default=1)
    parser.add_argument("--item-exponent", type=float, default=1.0, help="items ∝ ratings ** this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--include",
        type=Path,
        action="append",
        default=[],
        metavar="JSON",
        help="also show the sizes of an earlier run's --json (not run again), e.g. 1M and 5M next to 25M",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the handlers in this process (as the demo does) instead of one process per invocation",
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # one size, its result to this file
    args = parser.parse_args()
    if args.database_url and args.pg_data_dir:
        parser.error("give --database-url or --pg-data-dir, not both")
    if (args.database_url or args.pg_data_dir) and len(args.sizes) != 1:
        parser.error("a given database holds one dataset: give exactly one size with it")

    if args.child is not None:
        args.child.write_text(json.dumps(run_size(args, args.sizes[0])))
        return
    results = []
    for ratings in args.sizes:
        print(f"\n{human(ratings)} ratings: in a fresh process", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "size.json"
            command = [sys.executable, __file__, *sys.argv[1:], "--sizes", str(ratings), "--child", str(out)]
            if subprocess.run(command, check=False).returncode != 0:
                sys.exit(f"the {human(ratings)} run failed")
            results.append(json.loads(out.read_text()))
    for path in args.include:
        earlier = json.loads(path.read_text())
        if earlier["settings"]["users_per_shard"] != args.users_per_shard:
            print(f"note: {path} used {earlier['settings']['users_per_shard']} users per shard")
        ran = {size["target_ratings"] for size in results}
        results += [size for size in earlier["sizes"] if size["target_ratings"] not in ran]
    results.sort(key=lambda size: size["ratings"])
    figures = report(args, results)
    print_table(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
        print(f"\nFigures written to {args.json}")


if __name__ == "__main__":
    main()
