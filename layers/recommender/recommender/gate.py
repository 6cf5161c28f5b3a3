"""The quality gate: may this run replace the published one?

Surprise's algorithms are fitted to predict ratings, and a new run can rank worse than the one
app servers are reading (a parameter change, a data problem). Train measures every run on a
holdout split (`evaluation.py`); Merge compares its NDCG@k with the published run's and, when it
fell by more than `quality_gate_max_drop` (a fraction of the published value), writes the run's
manifest as `held` and leaves `latest.json` alone. `force_publish` overrides the gate.

Two runs are compared only when their measurements are comparable: same metric (k), same split
method, holdout fraction, seed and sampling budget (above 2M ratings the evaluation fits on a
sample of users, whose NDCG is lower: each item is learnt from fewer users). Otherwise, or when
nothing is published yet, or when the new run was not evaluated, the gate has no baseline and
lets the run through; the manifest's `gate` says which case applied.

The gate also knows the floor: the most-popular list that new users get. A run whose NDCG@k on
the holdout is below that baseline's publishes lists worse than the fallback it computes anyway.
`against_popularity` says so for the manifest, the metric and the CLI; with
`quality_gate_below_popularity: "hold"` the gate holds such a run, even the first one (nothing is
published then), and `force_publish` overrides that too. The default, `"warn"`, publishes it and
says so: a run that was not measured cannot be judged either way, and says that instead.
"""

from __future__ import annotations

from typing import Any

from .config import DEFAULT_QUALITY_GATE_BELOW_POPULARITY

PROTOCOL = ("method", "fraction", "seed", "sample_max_ratings")


def metric_name(top_n: int) -> str:
    return f"ndcg@{top_n}"


def against_popularity(quality: dict[str, Any] | None, top_n: int) -> dict[str, Any] | None:
    """The model's NDCG@top_n on the holdout against the popularity baseline's on the same split:
    `metric`, `model`, `popularity`, `ratio` (model / popularity; None when popularity scored 0)
    and `below` (strictly below: a tie is no worse than the fallback). None when not measured."""
    if quality is None:
        return None
    metric = metric_name(top_n)
    model, popular = quality["model"].get(metric), quality["popularity"].get(metric)
    if not isinstance(model, int | float) or not isinstance(popular, int | float):
        return None
    return {
        "metric": metric,
        "model": model,
        "popularity": popular,
        "ratio": model / popular if popular > 0 else None,
        "below": model < popular,
    }


def decide(
    quality: dict[str, Any] | None,
    published: dict[str, Any] | None,
    top_n: int,
    max_drop: float,
    force: bool,
    below_popularity: str = DEFAULT_QUALITY_GATE_BELOW_POPULARITY,
) -> dict[str, Any]:
    """The gate's decision, as recorded in the manifest: the drop from the published run first,
    then the popularity floor when `below_popularity` is "hold"."""
    decision = _against_published(quality, published, top_n, max_drop, force)
    decision["on_below_popularity"] = below_popularity
    floor = against_popularity(quality, top_n)
    if below_popularity == "hold" and floor is not None and floor["below"]:
        if decision["decision"] not in ("held", "forced"):
            decision["decision"] = "forced" if force else "held"
        decision["reason"] = (
            f"{floor['metric']} {floor['model']:.4f} is below the popularity baseline's"
            f" {floor['popularity']:.4f} (quality_gate_below_popularity: hold)"
        )
    return decision


def _against_published(
    quality: dict[str, Any] | None,
    published: dict[str, Any] | None,
    top_n: int,
    max_drop: float,
    force: bool,
) -> dict[str, Any]:
    """The decision of the drop from the published run alone."""
    metric = metric_name(top_n)
    decision: dict[str, Any] = {"metric": metric, "max_drop": max_drop, "forced": force}
    if quality is None:
        return {**decision, "decision": "not-evaluated"}
    current = quality["model"].get(metric)
    decision["current"] = current
    previous_quality = (published or {}).get("quality")
    if published is None or not previous_quality or metric not in previous_quality.get("model", {}):
        return {**decision, "decision": "no-baseline"}
    if any(previous_quality["split"].get(k) != quality["split"].get(k) for k in PROTOCOL):
        return {**decision, "decision": "no-baseline", "reason": "the published run used another protocol"}
    previous = previous_quality["model"][metric]
    decision.update(previous=previous, previous_run_id=published["run_id"])
    if current >= previous * (1.0 - max_drop):
        return {**decision, "decision": "passed"}
    return {**decision, "decision": "forced" if force else "held"}
