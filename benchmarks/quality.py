"""Recommendation quality on MovieLens: the ranking models and `auto` against Surprise's algorithms
and the popularity list.

    .venv/bin/python benchmarks/quality.py                      # ml-latest-small, every algorithm
    .venv/bin/python benchmarks/quality.py --data ~/ml-100k --skip SVDpp --regs 100 300

The data is read from its folder (default /work/shared/data/ml-latest-small) and never copied: the
MovieLens licence allows research use only. Without the folder the benchmark says so and exits.

Protocol: `recommender.evaluation.evaluate` (k=10, fraction=0.2, seed=0). Each user's latest 20% of
ratings are held out; the model is fitted on the rest with the product's `training.fit`; the list
scored is what the product publishes (`scoring.recommend`: the top 10 unseen items under the
product's ranking rule); every held-out item is relevant, whatever its rating. "popularity" is each
user's 10 most-rated unseen items. ALS and ItemKNN run with the product's defaults, as
`evaluation.evaluate` runs them for an explicit `{"algorithm": "ALS"}` or `"ItemKNN"`.

"auto" is what a run with `{"algorithm": "auto"}` would publish when the training part is all the
data it has: `choice.choose` measures its candidates on Train's own holdout split of the training
part (`evaluation.evaluation_split`), the winner is fitted on the whole training part and scored
once on the test split, like every other row. The test split never takes part in the choice. The
candidates' NDCG@10 on that inner split are printed and kept in the JSON ("auto").

EASE's `reg` and `implicit` are chosen on the TRAINING part only: the same hold-out applied again to
the training ratings (each user's latest 20% of them) gives a validation split; the pair with the
best NDCG@10 there is then fitted on the whole training part and scored once on the test split.
The test split never takes part in the choice. (A first run tried reg 50, 100, 200, 500 and 1000
with implicit=True only: 200 was best, 50 and 1000 clearly worse; hence the grid below.) With
implicit=False, X holds ratings and G = X^T X grows with their squares, so that grid is multiplied
by the mean squared rating of the validation's training ratings (about 13 on MovieLens). Surprise's algorithms run with their defaults (`random_state=0`),
KNNBaseline item-based with pearson_baseline similarities (Surprise's recommendation for it).

The similar items ("more like this") are measured in the same `evaluate` call, on the model
fitted on the training part: for each test user, the published similar items (each item's top 10,
min_support 5, the product's default) of their 3 most recent training items, merged, seen items
dropped, the first 10 (`evaluation.similar_items_metrics`). A second table gives their hit rate and
NDCG@10 per algorithm, with the measure each model's lists use and the share of test users who got
a list, beside the popularity list's.

RMSE is shown where it means something: EASE's estimates are ranking scores, not ratings (see
recommender/algorithms/ease.py), so its RMSE is left out. "fit s" is `training.fit`'s time.
Prints the table in the README's format ("Choosing an algorithm": best NDCG@10 first, in bold),
then everything as JSON.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recommender import choice, evaluation, training
from recommender.dataset import Ratings
from recommender.sample_data import read_movielens
from recommender.snapshot import ratings_from_rows

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"  # beside the clone
K = 10
FRACTION = 0.2
SEED = 0
REGS = (100.0, 150.0, 200.0, 300.0, 500.0)

ALGORITHMS: list[tuple[str, str, dict[str, Any]]] = [
    ("EASE", "EASE", {}),  # reg: tuned on the validation split, filled in at run time
    ("ALS", "ALS", {}),
    ("ItemKNN", "ItemKNN", {}),
    ("auto", choice.AUTO, {}),  # chooses on its own split of the training part (choose_auto)
    ("SVD", "SVD", {}),
    ("SVDpp", "SVDpp", {}),
    ("BaselineOnly", "BaselineOnly", {}),
    (
        "KNNBaseline item-based",
        "KNNBaseline",
        {"sim_options": {"name": "pearson_baseline", "user_based": False}},
    ),
    ("SlopeOne", "SlopeOne", {}),
    ("NMF", "NMF", {}),
    ("CoClustering", "CoClustering", {}),
]
NO_RMSE = {"EASE", "ALS", "ItemKNN"}  # scores, not ratings


def tune(
    ratings: Ratings, regs: list[float], implicits: list[bool], scale: tuple[float, float]
) -> dict[str, Any]:
    """NDCG@K of EASE for each (reg, implicit) on a validation split of the training part only."""
    outer = evaluation.holdout_split(ratings, FRACTION, SEED)
    inner = evaluation.holdout_split(outer.train, FRACTION, SEED)
    trials: list[dict[str, Any]] = []
    mean_square = float(np.mean(inner.train.ratings**2))
    for implicit in implicits:
        for base in regs:
            reg = base if implicit else round(base * mean_square)
            started = time.perf_counter()
            result = evaluation.evaluate_split(inner, "EASE", {"reg": reg, "implicit": implicit}, scale, K)
            trials.append({"reg": reg, "implicit": implicit, f"ndcg@{K}": result[f"ndcg@{K}"]})
            print(
                f"  validation: EASE reg={reg:g} implicit={implicit} ndcg@{K}={result[f'ndcg@{K}']:.4f}"
                f" ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    best = max(trials, key=lambda trial: trial[f"ndcg@{K}"])  # the first of equals
    return {
        "validation_split": evaluation.split_summary(inner, FRACTION, SEED),
        "trials": trials,
        "chosen": {"reg": best["reg"], "implicit": best["implicit"]},
    }


def choose_auto(ratings: Ratings, scale: tuple[float, float]) -> tuple[choice.Choice, evaluation.Split]:
    """What `auto` chooses when the training part of the test split is all the data: its
    candidates measured on Train's own split of that part. Returns the choice and the outer split."""
    outer = evaluation.holdout_split(ratings, FRACTION, SEED)
    inner = evaluation.evaluation_split(outer.train)

    def measure(name: str, params: dict[str, Any]) -> dict[str, Any]:
        report = evaluation.evaluate(outer.train, name, params, scale, k=K, split=inner)
        print(
            f"    auto's candidate {name}: ndcg@{K}={report['model'][f'ndcg@{K}']:.4f}"
            f" (popularity {report['popularity'][f'ndcg@{K}']:.4f}) fit {report['model']['seconds']:.1f} s",
            flush=True,
        )
        return report

    # as Train calls it (steps/train.py), without a memory limit: this process is not a Lambda
    return choice.choose(len(outer.train.item_ids), measure, values=outer.train.ratings), outer


def run_auto(ratings: Ratings, scale: tuple[float, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """auto's row: the winner of `choose_auto` fitted on the training part, scored on the test
    split; and the choice's record (every candidate's NDCG@K on the inner split) with its seconds."""
    started = time.perf_counter()
    print("  auto: choosing on Train's split of the training part ...", flush=True)
    made, outer = choose_auto(ratings, scale)
    choosing = time.perf_counter() - started
    print(f"  auto: chose {made.algorithm} in {choosing:.0f} s", flush=True)
    report = evaluation.evaluate(ratings, made.algorithm, made.params, scale, k=K, split=outer)
    return report, {**made.record(), "choosing_seconds": choosing}


def with_defaults(algorithm: str, params: dict[str, Any]) -> dict[str, Any]:
    """The algorithm's keyword arguments with the defaults it was built with filled in."""
    signature = inspect.signature(training.algorithm_class(algorithm).__init__)
    defaults = {
        name: p.default
        for name, p in signature.parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return {**defaults, **params}


def label_of(
    label: str, algorithm: str | None, params: dict[str, Any], chosen: str | None = None
) -> tuple[str, str]:
    """The README's label: the algorithm's name, and the settings that tell its rows apart."""
    if algorithm in ("EASE", "ALS", "ItemKNN"):
        params = with_defaults(algorithm, params)
    if label == "EASE":
        weighting = "binary" if params.get("implicit", True) else "rating-weighted"
        return label, f" ({weighting}, reg {params.get('reg', 0):g})"
    if label == "ALS":
        return label, f" ({params.get('factors')} factors, {params.get('confidence')})"
    if label == "ItemKNN":
        return label, f" ({str(params.get('weighting', '')).upper()}, K={params.get('K')})"
    if label == "auto":
        return label, f" (chose {chosen})"
    if label == "popularity":
        return label, " (most-rated unseen)"
    return label, ""


def cell(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"| algorithm | NDCG@{K} | precision@{K} | recall@{K} | MAP@{K} | hit rate@{K} | coverage@{K}"
        " | RMSE | fit s |"
    )
    lines = [head, "|" + "---|" * 9]
    ordered = sorted(rows, key=lambda row: -row["metrics"][f"ndcg@{K}"])  # stable: equals keep their order
    for row in ordered:
        m = row["metrics"]
        scores_only = row["label"] in NO_RMSE or row.get("algorithm") in NO_RMSE
        rmse = None if scores_only or "rmse" not in m else m["rmse"]
        seconds = cell(m["seconds"], 1) if "seconds" in m else "—"
        name, detail = label_of(row["label"], row.get("algorithm"), row["params"], row.get("chosen"))
        ndcg = cell(m[f"ndcg@{K}"])
        if row is ordered[0]:  # the best in bold, as the README shows it
            name, ndcg = f"**{name}**", f"**{ndcg}**"
        lines.append(
            f"| {name}{detail} | {ndcg} | {cell(m[f'precision@{K}'])}"
            f" | {cell(m[f'recall@{K}'])} | {cell(m[f'map@{K}'])} | {cell(m[f'hit_rate@{K}'], 3)}"
            f" | {cell(m[f'coverage@{K}'], 3)} | {cell(rmse)} | {seconds} |"
        )
    return "\n".join(lines)


def similar_table(rows: list[dict[str, Any]]) -> str:
    """The similar items' figures per algorithm, best NDCG@K first, and the popularity list's."""
    lines = [
        f"| algorithm | measure | hit rate@{K} | NDCG@{K} | users with a list |",
        "|" + "---|" * 5,
    ]
    measured = [row for row in rows if row.get("similar") is not None]
    for row in sorted(measured, key=lambda row: -row["similar"]["model"]["ndcg"]):
        s = row["similar"]
        name, detail = label_of(row["label"], row.get("algorithm"), row["params"], row.get("chosen"))
        lines.append(
            f"| {name}{detail} | {s['measure']} | {cell(s['model']['hit_rate'], 3)}"
            f" | {cell(s['model']['ndcg'])} | {s['with_list']:.1%} |"
        )
    if measured:
        popular = measured[0]["similar"]["popularity"]
        lines.append(
            f"| popularity (most-rated unseen) | — | {cell(popular['hit_rate'], 3)}"
            f" | {cell(popular['ndcg'])} | — |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a MovieLens folder")
    parser.add_argument("--regs", type=float, nargs="+", default=list(REGS), help="EASE regs to try")
    parser.add_argument(
        "--implicit",
        choices=["both", "true", "false"],
        default="both",
        help="EASE's implicit values to try (default both)",
    )
    parser.add_argument("--skip", nargs="*", default=[], help="labels of algorithms to leave out")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipped: {args.data} is not there (MovieLens is research-only: fetch it yourself)")
        return 0

    ratings = ratings_from_rows(read_movielens(args.data))
    scale = (float(ratings.ratings.min()), float(ratings.ratings.max()))
    print(
        f"{args.data.name}: {ratings.n_ratings:,} ratings, {len(ratings.user_ids):,} users,"
        f" {len(ratings.item_ids):,} items",
        flush=True,
    )
    implicits = {"both": [True, False], "true": [True], "false": [False]}[args.implicit]
    tuning = tune(ratings, args.regs, implicits, scale)
    print(f"  chosen on validation: {tuning['chosen']}", flush=True)

    rows: list[dict[str, Any]] = []
    popularity: dict[str, float] | None = None
    split: dict[str, Any] | None = None
    auto: dict[str, Any] | None = None
    for label, name, params in ALGORITHMS:
        if label in args.skip:
            continue
        if name == "EASE":
            params = dict(tuning["chosen"])
        started = time.perf_counter()
        chosen = None
        if name == choice.AUTO:
            report, auto = run_auto(ratings, scale)
            chosen = auto["chosen"]
        else:
            report = evaluation.evaluate(ratings, name, params, scale, k=K, fraction=FRACTION, seed=SEED)
        popularity, split = report["popularity"], report["split"]
        model, similar = report["model"], report["similar_items"]
        print(
            f"  {label}: ndcg@{K}={model[f'ndcg@{K}']:.4f} fit {model['seconds']:.1f} s,"
            f" similar items ({similar['measure']}) hit rate {similar['model']['hit_rate']:.3f}"
            f" ndcg {similar['model']['ndcg']:.4f}, {time.perf_counter() - started:.0f} s in all",
            flush=True,
        )
        rows.append(
            {
                "label": label,
                "algorithm": chosen or name,
                "chosen": chosen,
                "params": report["params"],
                "metrics": model,
                "similar": similar,
            }
        )
    if popularity is not None:
        rows.append({"label": "popularity", "algorithm": None, "params": {}, "metrics": popularity})

    print()
    print(table(rows))
    print(f"\nSimilar items of each test user's 3 latest training items, top {K}:\n")
    print(similar_table(rows))
    if auto is not None:
        measured = ", ".join(
            f"{c['algorithm']} {cell(c.get('ndcg'))}"
            + (f" ({c.get('skipped') or c.get('error')})" if "ndcg" not in c else "")
            for c in auto["candidates"]
        )
        print(f"\nauto chose {auto['chosen']}; NDCG@{K} on its split of the training part: {measured}")
    by_label = {row["label"]: row["metrics"] for row in rows}
    verdict: dict[str, Any] = {}
    if "EASE" in by_label and "SVD" in by_label and popularity is not None:
        ease, svd = by_label["EASE"][f"ndcg@{K}"], by_label["SVD"][f"ndcg@{K}"]
        verdict = {
            "ease_over_svd_ndcg": ease / svd if svd else None,
            "ease_at_least_3x_svd": bool(ease >= 3 * svd),
            "ease_above_popularity": bool(ease > popularity[f"ndcg@{K}"]),
        }
        print(
            f"\nEASE NDCG@{K} / SVD NDCG@{K} = {cell(verdict['ease_over_svd_ndcg'], 2)}"
            f" (target >= 3: {'met' if verdict['ease_at_least_3x_svd'] else 'NOT met'});"
            f" above popularity: {'yes' if verdict['ease_above_popularity'] else 'NO'}"
        )
    print(
        json.dumps(
            {
                "data": args.data.name,
                "ratings": ratings.n_ratings,
                "rating_scale": list(scale),
                "k": K,
                "split": split,
                "ease_tuning": tuning,
                "auto": auto,
                "results": rows,
                "target": verdict,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
