"""The `recommender evaluate` command's report: both protocols for several algorithms on one dataset.

- **Cross-validation of ratings** (`cross_validate_ratings`): Surprise's own benchmark protocol.
  `KFold(n_splits=folds, random_state=seed, shuffle=True)` over a Surprise `Dataset` holding the
  same rows in the same order as `Dataset.load_from_df` would, default parameters (with
  `random_state=0` where the algorithm takes one), mean RMSE and MAE over the folds. It runs
  Surprise's `cross_validate` itself, so its figures are Surprise's, to the last bit.
- **Hold-out of each user's latest ratings**: `evaluation.py`'s protocol, the one Train runs.

A module of its own because no step runs it: the recommender layer ships only what the steps
import (layers/recommender/build_closure.py), and this stays out with the command.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from surprise import Reader
from surprise.dataset import Dataset, DatasetAutoFolds
from surprise.model_selection import KFold, cross_validate

from .evaluation import (
    METHOD_LATEST,
    METRIC_NAMES,
    _check_k,
    _nonempty,
    evaluate_split,
    holdout_split,
    popularity_top_n_metrics,
    split_summary,
)
from .ratings import Ratings
from .training import effective_params, make_algorithm, rating_scale_of

#: what `recommender evaluate` compares by default: every Surprise algorithm but SVDpp, whose fit
#: takes minutes per fold on ml-latest-small (100k ratings) where the others take seconds.
#: SlopeOne holds two items x items matrices (1.5 GB at 10,000 items): leave it out on large
#: catalogues (`--algorithms`).
DEFAULT_ALGORITHMS = (
    "SVD",
    "BaselineOnly",
    "KNNBaseline",
    "NMF",
    "KNNBasic",
    "KNNWithMeans",
    "KNNWithZScore",
    "SlopeOne",
    "CoClustering",
    "NormalPredictor",
)


# --- Surprise's cross-validation protocol -------------------------------------------------------


class RatingsDataset(DatasetAutoFolds):  # type: ignore[misc]  # Surprise has no type hints
    """A Surprise dataset holding the rows of `Ratings`, built without pandas.

    Its `raw_ratings` are exactly what `Dataset.load_from_df(frame, reader)` makes of a frame of
    the same rows: (raw user, raw item, float rating, None) in row order. Splitters (`KFold`...)
    and `build_full_trainset` read nothing else."""

    def __init__(self, ratings: Ratings, rating_scale: tuple[float, float]) -> None:
        Dataset.__init__(self, Reader(rating_scale=rating_scale))
        self.has_been_split = False
        users, items = ratings.user_ids, ratings.item_ids
        self.raw_ratings = [
            (users[u], items[i], float(r), None)
            for u, i, r in zip(ratings.users.tolist(), ratings.items.tolist(), ratings.ratings.tolist())
        ]


def cross_validate_ratings(
    ratings: Ratings,
    algorithms: list[str],
    folds: int = 5,
    seed: int = 0,
    rating_scale: tuple[float, float] | None = None,
) -> list[dict[str, Any]]:
    """Surprise's benchmark protocol, one entry per algorithm, in the order given:
    {"algorithm", "params", "folds", "rmse", "mae" (means over the folds), "fit_seconds",
    "test_seconds" (means per fold)}.

    Every algorithm sees the same folds: `KFold(n_splits=folds, random_state=seed, shuffle=True)`.
    Parameters are the defaults plus `random_state=0` where the algorithm takes one (see
    `training.effective_params`); NormalPredictor, which draws from numpy's global generator, gets
    it seeded with `seed` first.
    """
    scale = rating_scale_of(ratings, rating_scale)
    data = RatingsDataset(ratings, scale)
    results: list[dict[str, Any]] = []
    for name in algorithms:
        algo = make_algorithm(name, {})
        if name == "NormalPredictor":
            np.random.seed(seed)
        started = time.perf_counter()
        out = cross_validate(
            algo,
            data,
            measures=["rmse", "mae"],
            cv=KFold(n_splits=folds, random_state=seed, shuffle=True),
        )
        results.append(
            {
                "algorithm": name,
                "params": effective_params(name, {}),
                "folds": int(folds),
                "rmse": float(np.mean(out["test_rmse"])),
                "mae": float(np.mean(out["test_mae"])),
                "fit_seconds": float(np.mean(out["fit_time"])),
                "test_seconds": float(np.mean(out["test_time"])),
                "seconds": time.perf_counter() - started,
            }
        )
    return results


# --- both protocols, for the `recommender evaluate` command --------------------------------------


def dataset_summary(ratings: Ratings, source: str, rating_scale: tuple[float, float]) -> dict[str, Any]:
    return {
        "source": source,
        "ratings": ratings.n_ratings,
        "users": len(ratings.user_ids),
        "items": len(ratings.item_ids),
        "rating_scale": [float(rating_scale[0]), float(rating_scale[1])],
    }


def run_report(
    ratings: Ratings,
    algorithms: list[str],
    *,
    source: str,
    rating_scale: tuple[float, float] | None = None,
    folds: int = 5,
    k: int = 10,
    fraction: float = 0.2,
    seed: int = 0,
    cross_validation: bool = True,
    top_n: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Both protocols for several algorithms on one dataset: a JSON-serialisable report.

    {"dataset": {...}, "cross_validation": {"folds", "seed", "results": [per algorithm]},
     "top_n": {"k", "split": {...}, "models": [per algorithm: "algorithm", "params", metrics],
               "popularity": {...}}}
    The top-N part splits once and fits every algorithm on the same training ratings.
    """
    say = progress or (lambda text: None)
    scale = rating_scale_of(ratings, rating_scale)
    report: dict[str, Any] = {"dataset": dataset_summary(ratings, source, scale)}
    if cross_validation:
        results = []
        for name in algorithms:
            started = time.perf_counter()
            results += cross_validate_ratings(ratings, [name], folds, seed, scale)
            say(f"cross-validation of {name}: {time.perf_counter() - started:.1f}s")
        report["cross_validation"] = {"folds": int(folds), "seed": int(seed), "results": results}
    if top_n:
        _check_k(k)
        split = _nonempty(holdout_split(ratings, fraction, seed))
        models = []
        for name in algorithms:
            started = time.perf_counter()
            metrics = evaluate_split(split, name, {}, scale, k)
            models.append({"algorithm": name, "params": effective_params(name, {}), **metrics})
            say(f"top-{k} hold-out of {name}: {time.perf_counter() - started:.1f}s")
        report["top_n"] = {
            "k": int(k),
            "split": split_summary(split, fraction, seed),
            "models": models,
            "popularity": popularity_top_n_metrics(split.train, split.test, k),
        }
    return report


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(
        "| "
        + " | ".join(
            cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(line, widths))
        )
        + " |"
        for line in lines
    )


def format_report(report: dict[str, Any]) -> str:
    """The report as Markdown tables, ready to paste."""
    data = report["dataset"]
    low, high = data["rating_scale"]
    parts = [
        f"Data: {data['source']}: {data['ratings']:,} ratings, {data['users']:,} users,"
        f" {data['items']:,} items, rating scale {low:g} to {high:g}"
    ]
    cv = report.get("cross_validation")
    if cv:
        parts.append(
            f"\nCross-validation (Surprise's benchmark protocol): KFold(n_splits={cv['folds']},"
            f" random_state={cv['seed']}, shuffle=True), default parameters, random_state=0;"
            " means over the folds, seconds per fold\n"
        )
        parts.append(
            _table(
                ["algorithm", "RMSE", "MAE", "fit s", "test s"],
                [
                    [
                        r["algorithm"],
                        f"{r['rmse']:.4f}",
                        f"{r['mae']:.4f}",
                        f"{r['fit_seconds']:.2f}",
                        f"{r['test_seconds']:.2f}",
                    ]
                    for r in cv["results"]
                ],
            )
        )
    top = report.get("top_n")
    if top:
        k, split = top["k"], top["split"]
        held = "latest" if split["method"] == METHOD_LATEST else f"a random (seed {split['seed']})"
        parts.append(
            f"\nTop-{k} hold-out: {held} {split['fraction']:.0%} of each user's ratings held out"
            f" ({split['test_ratings']:,} ratings of {split['test_users']:,} users; trained on"
            f" {split['train_ratings']:,}); relevant = the user's held-out items, whatever their"
            " rating; fit s = one fit on the training ratings\n"
        )
        names = [f"{m}@{k}" for m in METRIC_NAMES]
        rows = [
            [m["algorithm"], f"{m['rmse']:.4f}", f"{m['mae']:.4f}"]
            + [f"{m[n]:.4f}" for n in names]
            + [f"{m['seconds']:.2f}"]
            for m in top["models"]
        ]
        rows.append(
            ["popularity (most-rated unseen)", "-", "-"]
            + [f"{top['popularity'][n]:.4f}" for n in names]
            + ["-"]
        )
        parts.append(_table(["algorithm", "RMSE", "MAE", *names, "fit s"], rows))
    return "\n".join(parts)
