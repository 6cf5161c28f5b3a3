"""The Train step's stages at MovieLens-25M scale, before and after the compact-array changes.

    .venv/bin/python benchmarks/train_scale.py                 # makes the snapshot if missing
    .venv/bin/python benchmarks/train_scale.py --snapshot /tmp/r.csv.gz --ratings 5e6
    .venv/bin/python benchmarks/train_scale.py --no-before-fit --no-before-evaluation  # quicker
    .venv/bin/python benchmarks/train_scale.py --json train_scale.json

The snapshot is a gzip CSV as Extract writes it (`user,item,rating,timestamp`, sorted by user then
item, as `SELECT DISTINCT ON (user, item) ... ORDER BY user, item` returns it): by default 162,000
users "1".."162000", 59,000 items "item-00001".."item-59000" and exactly 25,000,000 ratings, at
least 20 per user (log-normal activity, about 154 on average), items drawn with Zipf-like
popularity, ratings 1 to 5 and timestamps drawn uniformly. No taste in it: the quality figures mean
nothing, the costs do.

Stages, each timed in this process (wall and CPU seconds) with its peak resident memory (the
kernel's VmHWM, reset as the stage starts; "held" is the resident memory at its start, which the
peak includes: the ratings arrays, the interpreter and the libraries):
- read_snapshot: the seed's reader (`csv` row by row into Python lists) against
  `snapshot.read_snapshot`, on the same file; their results must be identical.
- build_trainset: the seed's (dicts of lists of tuples) against `ArrayTrainset`.
- svd_fit: SVD with its default parameters (100 factors, 20 epochs, random_state 0) on either
  trainset; the factors must be bit-identical.
- model_from_fit: the seed's loops over `ur`/`ir` against the arrays.
- evaluation: the seed's (a holdout split of every rating, a second fit on 80% of them) against
  `evaluation.evaluate` (above EVALUATION_MAX_RATINGS, a sample of users).
Then SVD fit seconds on the first 1M and 5M ratings (`--fit-sizes`), to show how the fit grows,
and the evaluation's cost at a few sample budgets (`--eval-budgets`).

The "before" code is the seed's: its reader and trainset are the reference implementations the
product keeps (`snapshot.iter_snapshot_rows` and `ratings_from_rows`, `training.surprise_trainset`),
its model_from_fit is copied below verbatim (as of commit 8ff0203), and the "before" evaluation runs the current `evaluate` unsampled with the seed's trainset and model_from_fit.
Seconds are wall time on a shared machine: the CPU seconds vary less with other programs' load.
"""

from __future__ import annotations

import argparse
import functools
import gc
import gzip
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
from surprise import SVD, Trainset

from recommender import evaluation, kernels, training
from recommender.dataset import Ratings
from recommender.evaluation import EVALUATION_MAX_RATINGS, evaluate, evaluation_split, holdout_split, subset
from recommender.local.bootstrap import status_bytes
from recommender.local.recording import peak_counter_available
from recommender.model import KIND_REFIT, ModelArrays, utf8_order
from recommender.snapshot import iter_snapshot_rows, ratings_from_rows, read_snapshot
from recommender.training import (
    UNKNOWN_USER,
    FittedModel,
    build_trainset,
    estimate_or_default,
    model_from_fit,
    rating_scale_of,
    surprise_trainset,
)

SCALE = (1.0, 5.0)
DEFAULT_SNAPSHOT = Path(os.environ.get("TMPDIR", "/tmp")) / "train-scale-25m.csv.gz"


# --- the snapshot -------------------------------------------------------------------------------


def make_snapshot(path: Path, users: int, items: int, ratings: int, seed: int = 0) -> None:
    """Write the synthetic snapshot (see the module docstring); a few minutes at 25M."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(items) + 20.0) ** 1.1
    cdf = np.cumsum(weights[rng.permutation(items)])
    cdf /= cdf[-1]
    floor = min(20, ratings // users)
    counts = np.maximum(floor, rng.lognormal(4.4, 1.0, users)).astype(np.int64)
    counts = np.minimum(counts, items // 4)
    counts = np.maximum(floor, np.round(counts * ratings / counts.sum())).astype(np.int64)
    while (excess := int(counts.sum()) - ratings) != 0:  # exactly `ratings`
        np.add.at(counts, rng.integers(users, size=abs(excess)), -1 if excess > 0 else 1)
        counts = np.clip(counts, floor, items)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wb", compresslevel=6) as out:
        out.write(b"user,item,rating,timestamp\n")
        for start in range(0, users, 2000):
            lines = []
            for u in range(start, min(users, start + 2000)):
                n = int(counts[u])
                chosen = np.empty(0, dtype=np.int64)
                while chosen.size < n:  # distinct items, popular ones more often
                    drawn = np.minimum(np.searchsorted(cdf, rng.random(2 * n - chosen.size)), items - 1)
                    chosen = np.unique(np.concatenate([chosen, drawn]))
                if chosen.size > n:
                    chosen = np.sort(rng.choice(chosen, n, replace=False))
                stars = rng.integers(1, 6, n).tolist()
                stamps = rng.integers(789_652_009, 1_574_327_703, n).tolist()
                lines += [
                    f"{u + 1},item-{i + 1:05d},{r},{t}\n" for i, r, t in zip(chosen.tolist(), stars, stamps)
                ]
            out.write("".join(lines).encode())
    tmp.rename(path)


# --- the seed's code, verbatim (commit 8ff0203) ---------------------------------------------------


def seed_read_snapshot(stream: IO[bytes]) -> Ratings:
    """The seed's reader, which the product keeps as the reference `read_snapshot` must agree
    with: `csv` row by row into Python lists."""
    return ratings_from_rows(iter_snapshot_rows(stream))


#: the seed's trainset (dicts of lists of tuples), which the product keeps for comparisons
seed_build_trainset = surprise_trainset


def seed_model_from_fit(fitted: FittedModel) -> ModelArrays:
    algo, trainset = fitted.algorithm, fitted.trainset
    n_users, n_items = trainset.n_users, trainset.n_items
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum([len(trainset.ur[u]) for u in range(n_users)], out=indptr[1:])
    indices = np.fromiter(
        (i for u in range(n_users) for i, _ in trainset.ur[u]), dtype=np.int32, count=int(indptr[-1])
    )
    counts = np.asarray([len(trainset.ir[i]) for i in range(n_items)], dtype=np.int64)
    unknown = np.asarray(
        [estimate_or_default(algo, UNKNOWN_USER, i) for i in range(n_items)], dtype=np.float64
    )
    name = kernels.kernel_name(algo)
    kind = KIND_REFIT if name is None else name
    arrays = {} if name is None else kernels.export_arrays(algo, trainset)
    user_ids = [trainset.to_raw_uid(u) for u in range(n_users)]
    return ModelArrays(
        kind=kind,
        user_ids=user_ids,
        item_ids=[trainset.to_raw_iid(i) for i in range(n_items)],
        seen_indptr=indptr,
        seen_indices=indices,
        item_counts=counts,
        global_mean=float(trainset.global_mean),
        rating_scale=(float(fitted.rating_scale[0]), float(fitted.rating_scale[1])),
        unknown_user_scores=unknown,
        user_order=utf8_order(user_ids),
        arrays=arrays,
    )


@contextmanager
def seed_training() -> Iterator[None]:
    """`training.fit` and `evaluation`'s model_from_fit as the seed had them."""
    saved = training.build_trainset, evaluation.model_from_fit  # type: ignore[attr-defined]
    training.build_trainset = seed_build_trainset
    evaluation.model_from_fit = seed_model_from_fit  # type: ignore[attr-defined]
    try:
        yield
    finally:
        training.build_trainset, evaluation.model_from_fit = saved  # type: ignore[attr-defined]


def seed_evaluation(ratings: Ratings) -> dict[str, Any]:
    """Train's evaluation at the seed: a holdout split of every rating, a fit on 80% of them."""
    with seed_training():
        split = holdout_split(ratings)
        return evaluate(ratings, "SVD", {}, None, k=10, split=split, max_ratings=None)


# --- measuring ----------------------------------------------------------------------------------


def _status_gib(field: str) -> float | None:
    value = status_bytes(field)
    return None if value is None else value / 1024**3


def measure(name: str, version: str, work: Callable[[], Any], results: list[dict[str, Any]]) -> Any:
    gc.collect()
    reset = peak_counter_available()  # resets VmHWM to the current resident size
    held = _status_gib("VmRSS")
    load = os.getloadavg()[0]
    cpu, wall = time.process_time(), time.perf_counter()
    out = work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = _status_gib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    row = {
        "stage": name,
        "version": version,
        "seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "peak_gib": round(peak or 0.0, 2),
        "held_gib": round(held or 0.0, 2),
        "peak_is_process_max": not reset,
        "load_before": round(load, 2),
    }
    results.append(row)
    print(json.dumps(row), flush=True)
    return out


def same_ratings(a: Ratings, b: Ratings) -> bool:
    arrays = ("users", "items", "ratings", "timestamps")
    return (
        a.user_ids == b.user_ids
        and a.item_ids == b.item_ids
        and all(np.array_equal(getattr(a, n), getattr(b, n), equal_nan=n == "timestamps") for n in arrays)
    )


def same_factors(a: Any, b: Any) -> bool:
    return all(np.array_equal(getattr(a, n), getattr(b, n)) for n in ("pu", "qi", "bu", "bi"))


# --- the run ------------------------------------------------------------------------------------


def pipeline(
    version: str,
    ratings: Ratings,
    scale: tuple[float, float],
    build: Callable[[Ratings, tuple[float, float]], Trainset],
    make_model: Callable[[FittedModel], ModelArrays],
    results: list[dict[str, Any]],
) -> tuple[Any, bytes]:
    """Trainset, SVD fit, model arrays: (the fitted SVD without its trainset, the model's bytes)."""
    trainset = measure("build_trainset", version, lambda: build(ratings, scale), results)
    algo = measure("svd_fit", version, lambda: SVD(random_state=0).fit(trainset), results)
    fitted = FittedModel(algo, trainset, {}, scale, 0.0)
    model = measure("model_from_fit", version, lambda: make_model(fitted), results)
    algo.trainset = None  # keep the factors only
    return algo, model.to_bytes()


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    checks: dict[str, bool] = {}
    path = args.snapshot

    def read(reader: Callable[[IO[bytes]], Ratings]) -> Ratings:
        with open(path, "rb") as stream:
            return reader(stream)

    ratings = measure("read_snapshot", "after", lambda: read(read_snapshot), results)
    if args.before_read:
        before = measure("read_snapshot", "before", lambda: read(seed_read_snapshot), results)
        checks["read_snapshot identical"] = same_ratings(ratings, before)
        del before
    scale = rating_scale_of(ratings, None)

    if args.before_fit:
        seed_algo, seed_model = pipeline(
            "before", ratings, scale, seed_build_trainset, seed_model_from_fit, results
        )
    algo, model = pipeline("after", ratings, scale, build_trainset, model_from_fit, results)
    if args.before_fit:
        checks["svd factors bit-identical"] = same_factors(algo, seed_algo)
        checks["model arrays identical"] = model == seed_model
        del seed_algo, seed_model
    del algo, model

    quality = measure("evaluation", "after", lambda: evaluate(ratings, "SVD", {}, None, k=10), results)
    reports = {"after": quality}
    if args.before_evaluation:
        reports["before"] = measure("evaluation", "before", lambda: seed_evaluation(ratings), results)

    fits = []
    for size in args.fit_sizes:
        if size >= ratings.n_ratings:
            continue
        part = subset(ratings, np.arange(size))  # the first users, with all their ratings
        part_set = build_trainset(part, scale)
        measure(
            f"svd_fit {size / 1e6:g}M",
            "after",
            functools.partial(SVD(random_state=0).fit, part_set),
            results,
        )
        fits.append({"ratings": part.n_ratings, "users": len(part.user_ids), "items": len(part.item_ids)})
        del part, part_set

    budgets = []
    for budget in args.eval_budgets:
        if budget >= ratings.n_ratings:
            continue
        split = evaluation_split(ratings, max_ratings=budget)
        report = measure(
            f"evaluation budget {budget / 1e6:g}M",
            "after",
            functools.partial(evaluate, ratings, "SVD", {}, None, k=10, split=split),
            results,
        )
        budgets.append(
            {"budget": budget, "sample": report["sample"], "split": report["split"], "model": report["model"]}
        )
        del split
    return {
        "snapshot": str(path),
        "ratings": ratings.n_ratings,
        "users": len(ratings.user_ids),
        "items": len(ratings.item_ids),
        "evaluation_max_ratings": EVALUATION_MAX_RATINGS,
        "cpu": os.cpu_count(),
        "stages": results,
        "checks": checks,
        "quality": reports,
        "fit_sizes": fits,
        "eval_budgets": budgets,
    }


def table(report: dict[str, Any]) -> str:
    by_stage: dict[str, dict[str, dict[str, Any]]] = {}
    for row in report["stages"]:
        by_stage.setdefault(row["stage"], {})[row["version"]] = row

    def cell(row: dict[str, Any] | None) -> list[str]:
        if row is None:
            return ["-", "-", "-"]
        return [f"{row['seconds']:.1f}", f"{row['cpu_seconds']:.1f}", f"{row['peak_gib']:.2f}"]

    header = "| stage | before s | before cpu s | before peak GiB | after s | after cpu s | after peak GiB |"
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|"]
    for stage, rows in by_stage.items():
        lines.append("| " + " | ".join([stage, *cell(rows.get("before")), *cell(rows.get("after"))]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--snapshot", type=Path, default=DEFAULT_SNAPSHOT, help="made if missing")
    parser.add_argument("--users", type=int, default=162_000)
    parser.add_argument("--items", type=int, default=59_000)
    parser.add_argument("--ratings", type=float, default=25e6)
    parser.add_argument("--no-before-read", dest="before_read", action="store_false")
    parser.add_argument(
        "--no-before-fit",
        dest="before_fit",
        action="store_false",
        help="skips the seed's trainset, fit and model",
    )
    parser.add_argument("--no-before-evaluation", dest="before_evaluation", action="store_false")
    parser.add_argument(
        "--fit-sizes",
        type=lambda s: [int(float(x)) for x in s.split(",") if x],
        default=[1_000_000, 5_000_000],
    )
    parser.add_argument(
        "--eval-budgets", type=lambda s: [int(float(x)) for x in s.split(",") if x], default=[]
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.snapshot.exists():
        users = round(args.users * min(1.0, args.ratings / 25e6))
        print(f"making {args.snapshot} ({int(args.ratings):,} ratings, {users:,} users)", flush=True)
        started = time.perf_counter()
        make_snapshot(args.snapshot, users, args.items, int(args.ratings))
        print(f"made in {time.perf_counter() - started:.0f}s", flush=True)
    report = run(args)
    print()
    print(
        f"{report['ratings']:,} ratings, {report['users']:,} users, {report['items']:,} items;"
        f" {report['cpu']} CPUs; evaluation budget {report['evaluation_max_ratings']:,} ratings"
    )
    print(table(report))
    for name, ok in report["checks"].items():
        print(f"{name}: {'yes' if ok else 'NO'}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
