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
"""

from __future__ import annotations

from typing import Any

PROTOCOL = ("method", "fraction", "seed", "sample_max_ratings")


def metric_name(top_n: int) -> str:
    return f"ndcg@{top_n}"


def decide(
    quality: dict[str, Any] | None,
    published: dict[str, Any] | None,
    top_n: int,
    max_drop: float,
    force: bool,
) -> dict[str, Any]:
    """The gate's decision, as recorded in the manifest."""
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
