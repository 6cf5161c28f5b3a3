"""NDCG@10 of candidate settings on Train's own evaluation sample of the calibrated synthetic data,
as `auto` measures them (`evaluation.evaluate` on `evaluation.evaluation_split`), to tune the
ranking models where EASE does not fit.

    .venv/bin/python benchmarks/tune_candidates.py 'ALS={}' 'ALS={"factors": 128}' 'ItemKNN={"K": 20}'

The data is `scale_models.py`'s (25M ratings x 59,000 items x 162,000 users by default), generated
once into --work and reused. Prints one line per setting: NDCG@10, popularity's, their ratio and
the seconds the evaluation took (RMSE included, as Train computes it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import scale_models

from recommender import evaluation


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("settings", nargs="+", help='NAME=JSON params, e.g. ALS={"factors": 128}')
    parser.add_argument("--ratings", type=lambda text: int(float(text)), default=25_000_000)
    parser.add_argument("--users", type=int, default=162_000)
    parser.add_argument("--items", type=int, default=59_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tune-candidates"))
    args = parser.parse_args()
    grid = [(name, json.loads(params)) for name, params in (text.split("=", 1) for text in args.settings)]
    args.work.mkdir(parents=True, exist_ok=True)
    if not (args.work / "ratings.npz").exists():
        print("generated:", scale_models.make_data(args, args.work), flush=True)
    ratings = scale_models.load_ratings(args.work)
    split = evaluation.evaluation_split(ratings)
    print("Train's sample:", split.sample, flush=True)
    for name, params in grid:
        started = time.perf_counter()
        report = evaluation.evaluate(ratings, name, params, None, k=10, split=split)
        model, popular = report["model"]["ndcg@10"], report["popularity"]["ndcg@10"]
        print(
            f"{name} {json.dumps(params)}: ndcg@10 {model:.4f}, popularity {popular:.4f},"
            f" ratio {model / popular:.2f}, {time.perf_counter() - started:.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
