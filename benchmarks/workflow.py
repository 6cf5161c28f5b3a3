"""Seconds per step of the whole workflow, and the predictor's kernel against the seed's loop.

    .venv/bin/python benchmarks/workflow.py                 # 5,000 users x 5,000 items, ~500,000 ratings
    .venv/bin/python benchmarks/workflow.py --users 2000 --items 1000 --ratings-per-user 40

Part 1 runs the real state machine locally (embedded PostgreSQL, moto S3, the ASL file) on
synthetic data and prints the seconds each step spent inside its Lambda handler.
Part 2, in the same process and on the same fitted SVD, times the seed article's predictor (one
`algo.predict` call per unseen (user, item) pair) on a sample of users, extrapolated to all users
and stated as such, against this product's block kernel over all users. Prints a table and JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import numpy as np

from recommender.client import Recommendations
from recommender.config import SourceTable
from recommender.database import connect
from recommender.local import LocalEngine, embedded_postgres
from recommender.sample_data import SyntheticSpec, load_ratings, synthetic_ratings
from recommender.scoring import recommend
from recommender.snapshot import ratings_from_rows
from recommender.training import fit, model_from_fit


def workflow(spec: SyntheticSpec, users_per_shard: int) -> dict[str, float]:
    source = SourceTable(timestamp_column="rated_at")
    with embedded_postgres() as url:
        with closing(connect(url, "recommender-benchmark", readonly=False)) as conn:
            load_ratings(conn, synthetic_ratings(spec), source)
        run_input = {
            "users_per_shard": users_per_shard,
            "max_concurrency": 2,
            "source": {"timestamp_column": "rated_at"},
        }
        with LocalEngine(url) as engine, tempfile.TemporaryDirectory() as out:
            result = engine.run(run_input)
            if result.status != "SUCCEEDED":
                sys.exit(f"run failed: {result.error}: {result.cause}")
            engine.export(Path(out))
            manifest = Recommendations.open(out).manifest
    timings = dict(manifest["timings"])
    timings["wall_seconds"] = result.seconds
    timings["ratings"] = manifest["dataset"]["rows"]
    timings["shards"] = len(manifest["shards"])
    return timings


def predictor_comparison(spec: SyntheticSpec, sample_users: int, top_n: int) -> dict[str, float]:
    ratings = ratings_from_rows((u, i, r) for u, i, r, _ in synthetic_ratings(spec))
    fitted = fit(ratings, "SVD", {}, None)
    model = model_from_fit(fitted)
    algo, trainset = fitted.algorithm, fitted.trainset

    users = np.arange(model.n_users)
    started = time.perf_counter()
    lists = list(recommend(model, users, top_n))
    kernel = time.perf_counter() - started

    sample = users[:: max(1, model.n_users // sample_users)][:sample_users]
    started = time.perf_counter()
    agree = 0
    for top in (lists[u] for u in sample.tolist()):
        raw_user = model.user_ids[top.user]
        seen = {i for i, _ in trainset.ur[top.user]}
        predictions = [
            (algo.predict(raw_user, model.item_ids[i], clip=False).est, i)
            for i in range(model.n_items)
            if i not in seen
        ]
        predictions.sort(key=lambda p: -p[0])
        best = {i for _, i in predictions[:top_n]}
        agree += len(best & set(top.items.tolist()))
    per_pair_sample = time.perf_counter() - started
    per_pair_all = per_pair_sample / len(sample) * model.n_users
    return {
        "users": model.n_users,
        "items": model.n_items,
        "kernel_seconds_all_users": kernel,
        "per_pair_seconds_sample": per_pair_sample,
        "per_pair_sample_users": len(sample),
        "per_pair_seconds_all_users_extrapolated": per_pair_all,
        "speedup": per_pair_all / kernel,
        # ranked on unclipped estimates (clip=False costs the same): clipped ones tie at the top
        "top_n_overlap_with_per_pair": agree / (len(sample) * top_n),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--ratings-per-user", type=int, default=100)
    parser.add_argument("--users-per-shard", type=int, default=1250)
    parser.add_argument("--sample-users", type=int, default=20)
    args = parser.parse_args()
    spec = SyntheticSpec(users=args.users, items=args.items, ratings_per_user=args.ratings_per_user)

    steps = workflow(spec, args.users_per_shard)
    compare = predictor_comparison(spec, args.sample_users, top_n=10)
    size = f"{spec.users:,} users x {spec.items:,} items, {steps['ratings']:,.0f} ratings"
    print(f"\nWorkflow, {size}, {steps['shards']:.0f} shards")
    for name in (
        "extract_seconds",
        "train_seconds",
        "predict_seconds_max_shard",
        "predict_seconds_total",
        "merge_seconds",
        "wall_seconds",
    ):
        print(f"  {name:<28} {steps[name]:8.2f}")
    print("\nPredicting top-10 for every user (same SVD model, same process)")
    measured = compare["per_pair_seconds_sample"]
    sample = f"measured on {compare['per_pair_sample_users']} users: {measured:.2f} s"
    print(
        f"  {'seed per-pair predict() loop':<40} {compare['per_pair_seconds_all_users_extrapolated']:9.2f} s"
        f"  ({sample}, extrapolated)"
    )
    kernel = compare["kernel_seconds_all_users"]
    print(f"  {'block kernel (this product)':<40} {kernel:9.2f} s  (all users, measured)")
    print(f"  {'ratio':<40} {compare['speedup']:9.0f}x")
    print(f"  {'top-10 overlap with the per-pair lists':<40} {compare['top_n_overlap_with_per_pair']:9.3f}")
    print(json.dumps({"workflow": steps, "predictor": compare}, indent=1))


if __name__ == "__main__":
    main()
