"""The `auto` algorithm: measure a few candidates on Train's holdout split, fit only the winner.

No one algorithm ranks best on every dataset: on MovieLens-like data the ranking models (EASE,
ALS, item-kNN) beat "most popular" clearly while SVD, trained for rating error, ranks below it.
So `auto` measures each candidate that fits the data's size on the holdout split Train makes
anyway (`evaluation.evaluation_split`: each user's latest ratings, a bounded sample of users on
large data), in order of cost, and stops starting new candidates once `budget_seconds` are spent:
the first candidate always runs. The winner is the candidate with the best NDCG@k on that split;
an earlier candidate wins a tie. Train then fits the winner alone on every rating, and the model
metadata and manifest record every candidate's figures, seconds, and the choice.

Candidates, cheapest first:
- `ItemKNN` (BM25 weighting, 100 neighbours) and `ALS` (64 factors), their defaults: seconds even
  at 25M ratings;
- `SVD`, the product's historical default, so that `auto` is never worse than it on the split;
- `EASE` when the catalogue has at most `EASE_MAX_ITEMS` items and its dense items x items model
  fits the memory of every function that loads it (`ease_excluded`; the record says why not),
  rating-weighted (`implicit: False`) with `reg` = 150 x the mean squared rating when every rating
  is positive, else binary with its defaults. Why: on a validation split of ml-latest-small's
  training part, rating-weighted EASE with that `reg` ranked best (benchmarks/quality.py), and its
  NDCG@10 on the test split was 0.139 against 0.131 for binary EASE; between 100 and 200 x the
  mean square it moved by 1%. Ratings of zero or below carry no weight in that model (a zero
  would erase the rating), so such data keeps binary EASE.
A candidate that fails on the data (a `RecommenderError`, e.g. every rating equal) is recorded
with its error and skipped; when every candidate fails, the first failure is raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import RecommenderError

AUTO = "auto"

#: what `auto` may spend measuring candidates before it stops starting new ones (seconds); the
#: final fit comes on top, so Train stays well inside Lambda's 15 minutes
DEFAULT_BUDGET_SECONDS = 300.0

#: EASE inverts an items x items matrix: about 8 GB of float64 at 30,000 items; at 15,000 items it
#: fits Train's memory and a few minutes (algorithms/ease.py refuses larger catalogues itself)
EASE_MAX_ITEMS = 15_000

#: EASE's model is a dense items x items float64 matrix; the functions that load it hold about two
#: (the matrix and the object's bytes), and this much besides (the process, the ratings, a block of
#: scores); measured on ml-latest-small: Train 1.6 GB at 9,742 items, two matrices and 55 MB
EASE_MODEL_MATRICES = 2
EASE_RESERVE_MB = 400

#: rating-weighted EASE's `reg` per unit of mean squared rating (G = X^T X grows with the squares)
EASE_REG_PER_MEAN_SQUARE = 150.0

Candidate = tuple[str, dict[str, Any]]


def ease_params(values: np.ndarray | None) -> dict[str, Any]:
    """EASE's parameters for ratings `values`: rating-weighted with a `reg` scaled to them when
    every rating is positive and the scale is a finite positive number, else EASE's defaults."""
    if values is None or not len(values) or not bool(np.all(values > 0)):
        return {}
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore"):  # a dot product: no array of squares in Train
        reg = EASE_REG_PER_MEAN_SQUARE * float(np.dot(values, values)) / len(values)
    if not np.isfinite(reg) or reg <= 0:
        return {}
    return {"implicit": False, "reg": float(f"{reg:.6g}")}


def ease_excluded(n_items: int, memory_mb: int | None) -> str | None:
    """Why EASE is not a candidate for `n_items` items when the functions that load the model have
    `memory_mb` MB (None: unknown, no limit), or None when it is one."""
    if n_items > EASE_MAX_ITEMS:
        return f"{n_items:,} items: more than EASE's {EASE_MAX_ITEMS:,}"
    needed = EASE_MODEL_MATRICES * 8 * n_items**2 / 2**20 + EASE_RESERVE_MB
    if memory_mb is not None and needed > memory_mb:
        return (
            f"{n_items:,} items: EASE's model needs about {needed:,.0f} MB where it is loaded, and the"
            f" smallest of Train's, Predict's and Merge's memory is {memory_mb:,} MB"
        )
    return None


def candidates(
    n_items: int, values: np.ndarray | None = None, memory_mb: int | None = None
) -> list[Candidate]:
    """The candidates for a catalogue of `n_items` items rated `values`, cheapest first."""
    chosen: list[Candidate] = [("ItemKNN", {}), ("ALS", {}), ("SVD", {})]
    if ease_excluded(n_items, memory_mb) is None:
        chosen.append(("EASE", ease_params(values)))
    return chosen


@dataclass
class Measured:
    """One candidate's result on the split: its NDCG@k and seconds, or why it could not run."""

    algorithm: str
    params: dict[str, Any]
    ndcg: float | None = None
    seconds: float = 0.0
    report: dict[str, Any] | None = None  # evaluation.evaluate's report of this candidate
    error: str | None = None
    skipped: str | None = None  # why it was not measured (the budget was spent)

    def record(self) -> dict[str, Any]:
        """What the model metadata and the manifest keep of this candidate."""
        out: dict[str, Any] = {"algorithm": self.algorithm, "seconds": round(self.seconds, 3)}
        if self.report is not None:
            out["ndcg"] = self.ndcg
            out["params"] = self.report["params"]
        if self.error is not None:
            out["error"] = self.error
        if self.skipped is not None:
            out["skipped"] = self.skipped
        return out


@dataclass
class Choice:
    """The winner and every candidate's result."""

    algorithm: str
    params: dict[str, Any]
    measured: list[Measured] = field(default_factory=list)
    budget_seconds: float = DEFAULT_BUDGET_SECONDS

    @property
    def report(self) -> dict[str, Any] | None:
        """The winner's evaluation report: Train's quality section, as for an explicit algorithm."""
        for result in self.measured:
            if result.algorithm == self.algorithm and result.report is not None:
                return result.report
        return None

    def record(self) -> dict[str, Any]:
        return {
            "chosen": self.algorithm,
            "rule": "the best NDCG@k on Train's holdout split; an earlier candidate wins a tie",
            "budget_seconds": self.budget_seconds,
            "candidates": [result.record() for result in self.measured],
        }


def choose(
    n_items: int,
    evaluate: Callable[[str, dict[str, Any]], dict[str, Any]] | None,
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    clock: Callable[[], float] = time.perf_counter,
    values: np.ndarray | None = None,
    memory_mb: int | None = None,
) -> Choice:
    """Measure the candidates with `evaluate(algorithm, params)` (an `evaluation.evaluate` report)
    within the budget and return the winner. `evaluate` None (the run is not measured, or the data
    is too small to hold anything out): the first candidate, unmeasured. `values`: the ratings,
    which set EASE's parameters (`ease_params`); `memory_mb`: see `ease_excluded`."""
    options = candidates(n_items, values, memory_mb)
    if evaluate is None:
        name, params = options[0]
        return Choice(
            name, params, [Measured(name, params, skipped="the run is not measured")], budget_seconds
        )
    started = clock()
    measured: list[Measured] = []
    failures: list[RecommenderError] = []
    for name, params in options:
        if measured and clock() - started >= budget_seconds:
            measured.append(Measured(name, params, skipped=f"the {budget_seconds:g} s budget was spent"))
            continue
        began = clock()
        try:
            report = evaluate(name, params)
        except RecommenderError as error:
            failures.append(error)
            measured.append(
                Measured(name, params, seconds=clock() - began, error=f"{type(error).__name__}: {error}")
            )
            continue
        ndcg = report["model"].get(f"ndcg@{report['k']}")
        measured.append(Measured(name, params, ndcg, clock() - began, report))
    excluded = ease_excluded(n_items, memory_mb)
    if excluded is not None:  # said in the record, so that a user sees why EASE was not measured
        measured.append(Measured("EASE", {}, skipped=excluded))
    scored = [result for result in measured if result.report is not None]
    if not scored:
        raise failures[0]
    # max() keeps the first of equal keys: an earlier (cheaper) candidate wins a tie
    best = max(scored, key=lambda result: -1.0 if result.ndcg is None else result.ndcg)
    return Choice(best.algorithm, best.params, measured, budget_seconds)
