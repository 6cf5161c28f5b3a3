"""Does the synthetic data judge ranking models as real data does? NDCG@10 of popularity, item-kNN,
ALS and EASE, side by side, on synthetic data at ml-latest-small's shape and on ml-latest-small.

    .venv/bin/python benchmarks/calibration.py                   # the generator's defaults + MovieLens
    .venv/bin/python benchmarks/calibration.py --set selection_strength=1.5 --set topics=0
    .venv/bin/python benchmarks/calibration.py --grid selection_strength=3,5 --grid topics=20,40

Needs the `bench` extra (`implicit`, `scipy`): `.venv/bin/pip install -e '.[bench]'`. MovieLens is
read from /work/shared/data/ml-latest-small (or --data) and never copied; absent, it is skipped.

Protocol, the same for every model and both data sets: `recommender.evaluation.holdout_split`
(each user's latest 20% of ratings by timestamp held out), NDCG@10 by the product's metric code
(`evaluation.ranking_metrics`: binary relevance, every held-out item relevant). Popularity is
`evaluation.popularity_top_n_metrics`; EASE is `evaluation.evaluate_split` with the product's
defaults. implicit's models are fitted on the training part with binary confidence (every rating
is 1) and their own `recommend` (seen items filtered) gives each test user's 10 items:
- item-kNN: `implicit.nearest_neighbours.BM25Recommender`, K=100, other parameters default;
- ALS: `implicit.cpu.als.AlternatingLeastSquares`, 64 factors, random_state 0, others default.
None is tuned: the question is whether the data ranks the models as MovieLens does, not how good
each can be made. The targets: MovieLens's order, and each ratio to popularity within 25% of
MovieLens's, both as this benchmark measures them on ml-latest-small (when present: it is measured
first) and as the issue quotes them (kNN 1.02, ALS 1.24, EASE 1.60).

The generator's calibrated point, what `recommender demo` and `recommender load --synthetic` use:
    .venv/bin/python benchmarks/calibration.py --calibrated --grid seed=0,1,2

The synthetic data has MovieLens's shape: 610 users, 9,742 items and exactly 100,836 ratings.
Prints a line per data set (a grid prints one per point), then everything as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from recommender import evaluation
from recommender.ratings import Ratings
from recommender.sample_data import CALIBRATED, SyntheticSpec, read_movielens, synthetic_ratings
from recommender.snapshot import ratings_from_rows

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"  # beside the clone
SHAPE = (610, 9742, 100_836)  # ml-latest-small: users, items, ratings
K = 10
FRACTION = 0.2
SEED = 0
MODELS = ("popularity", "item-kNN", "ALS", "EASE")
ISSUE_RATIOS = {"item-kNN": 1.02, "ALS": 1.24, "EASE": 1.60}  # NDCG@10 over popularity's, as quoted
TOLERANCE = 0.25


def _implicit_ndcg(split: evaluation.Split, model: Any) -> float:
    """Fit an implicit model on the training part (binary confidence) and score its top-K lists."""
    from scipy.sparse import csr_matrix

    train = split.train
    n_users, n_items = len(train.user_ids), len(train.item_ids)
    user_items = csr_matrix(
        (np.ones(train.n_ratings, dtype=np.float32), (train.users, train.items)), shape=(n_users, n_items)
    )
    user_items.sum_duplicates()
    user_items.data[:] = 1.0
    model.fit(user_items, show_progress=False)
    relevant = evaluation.relevant_items(split.test)
    index = {raw: inner for inner, raw in enumerate(train.user_ids)}
    users = np.asarray([index[u] for u in relevant], dtype=np.int64)  # every test user is in train
    ids, _ = model.recommend(users, user_items[users], N=K, filter_already_liked_items=True)
    lists = (
        ([train.item_ids[i] for i in row.tolist() if i >= 0], relevant[user])
        for user, row in zip(relevant, ids)
    )
    return evaluation.ranking_metrics(lists, K, n_items)[f"ndcg@{K}"]


def measure(ratings: Ratings) -> dict[str, float]:
    """NDCG@K of every model on the latest-20% split, and the seconds the four took."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import BM25Recommender
    from implicit.utils import ParameterWarning
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, "blas")  # implicit's advice: its own threads, not BLAS's, share the cores
    warnings.simplefilter("ignore", ParameterWarning)  # BM25's weighting hands its fit a COO matrix

    started = time.perf_counter()
    split = evaluation.holdout_split(ratings, FRACTION, SEED)
    scale = (float(ratings.ratings.min()), float(ratings.ratings.max()))
    result = {
        "popularity": evaluation.popularity_top_n_metrics(split.train, split.test, K)[f"ndcg@{K}"],
        "item-kNN": _implicit_ndcg(split, BM25Recommender(K=100)),
        "ALS": _implicit_ndcg(split, AlternatingLeastSquares(factors=64, random_state=0)),
        "EASE": evaluation.evaluate_split(split, "EASE", {}, scale, K)[f"ndcg@{K}"],
    }
    result["seconds"] = time.perf_counter() - started
    return result


def ratios(result: dict[str, float]) -> dict[str, float]:
    return {name: result[name] / result["popularity"] for name in MODELS[1:]}


def verdict(result: dict[str, float], references: dict[str, dict[str, float]]) -> dict[str, bool]:
    """The targets: MovieLens's order (popularity < kNN < ALS < EASE), and every ratio within 25%
    of each reference's (`references`: a name, then MovieLens's ratios)."""
    got = ratios(result)
    values = [result[name] for name in MODELS]
    marks = {"same_order": all(a < b for a, b in itertools.pairwise(values))}
    for name, wanted in references.items():
        marks[f"ratios_within_25%_of_{name}"] = all(abs(got[n] / wanted[n] - 1) <= TOLERANCE for n in got)
    return marks


def line(label: str, result: dict[str, float], references: dict[str, dict[str, float]]) -> str:
    got = ratios(result)
    cells = "  ".join(f"{name} {result[name]:.4f}" for name in MODELS)
    shown = "  ".join(f"{name}/pop {got[name]:.2f}" for name in MODELS[1:])
    marks = verdict(result, references)
    checks = ", ".join(
        f"ratios vs {name} {'ok' if marks[f'ratios_within_25%_of_{name}'] else 'NO'}" for name in references
    )
    return (
        f"{label}: {cells} | {shown} | order {'ok' if marks['same_order'] else 'NO'}, {checks}"
        f" ({result['seconds']:.0f} s)"
    )


def _values(text: str) -> list[Any]:
    """'3' -> [3], '0.5,1' -> [0.5, 1.0]: ints stay ints."""
    return [float(v) if any(c in v for c in ".e") else int(v) for v in text.split(",")]


def _assignments(pairs: list[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    fields = {f.name for f in dataclasses.fields(SyntheticSpec)}
    for pair in pairs:
        name, _, values = pair.partition("=")
        if name not in fields:
            raise SystemExit(f"unknown SyntheticSpec field {name!r}: one of {sorted(fields)}")
        out[name] = _values(values)
    return out


def synthetic(**tuning: Any) -> Ratings:
    users, items, total = SHAPE
    spec = SyntheticSpec.with_total(users, items, total, **tuning)
    return ratings_from_rows(synthetic_ratings(spec))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a MovieLens folder")
    parser.add_argument("--set", action="append", default=[], help="a SyntheticSpec field=value")
    parser.add_argument("--grid", action="append", default=[], help="a field=v1,v2,...: one run each")
    parser.add_argument("--no-movielens", action="store_true", help="synthetic data only")
    parser.add_argument(
        "--calibrated", action="store_true", help="start from the calibrated point (sample_data.CALIBRATED)"
    )
    args = parser.parse_args()
    fixed = {**(dict(CALIBRATED) if args.calibrated else {})}
    fixed.update({name: values[0] for name, values in _assignments(args.set).items()})
    grid = _assignments(args.grid)
    report: dict[str, Any] = {"shape": dict(zip(("users", "items", "ratings"), SHAPE)), "synthetic": []}
    references = {"issue": ISSUE_RATIOS}
    if not args.no_movielens:
        if args.data.is_dir():
            result = measure(ratings_from_rows(read_movielens(args.data)))
            references = {args.data.name: ratios(result), **references}
            print(line(args.data.name, result, references), flush=True)
            report["movielens"] = {"data": args.data.name, "ndcg@10": result, "ratios": ratios(result)}
        else:
            print(f"MovieLens skipped: {args.data} is not there (research-only: fetch it yourself)")
    for point in itertools.product(*grid.values()):
        tuning = {**fixed, **dict(zip(grid, point))}
        result = measure(synthetic(**tuning))
        label = "synthetic " + (" ".join(f"{k}={v}" for k, v in tuning.items()) or "(defaults)")
        print(line(label, result, references), flush=True)
        report["synthetic"].append(
            {
                "tuning": tuning,
                "ndcg@10": result,
                "ratios": ratios(result),
                "verdict": verdict(result, references),
            }
        )
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
