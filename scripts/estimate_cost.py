"""What one run costs on AWS, worked from published prices and seconds measured on this machine.

    .venv/bin/python scripts/estimate_cost.py          # the tables in docs/deploy.md

Every input is below, with where it comes from. docs/deploy.md prints this script's output, and
tests/unit/test_deploy.py checks that the two agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Published us-east-1 prices (Lambda on arm64, Step Functions Standard, S3 Standard requests).
LAMBDA_GB_SECOND = 0.0000133334
LAMBDA_REQUEST = 0.20 / 1_000_000
STATE_TRANSITION = 0.025 / 1_000
S3_PUT = 0.005 / 1_000
S3_GET = 0.0004 / 1_000

# Assumptions (docs/deploy.md, "Costs", says why each is what it is).
LAMBDA_FACTOR = 2.0  # Lambda seconds per second measured here: vCPU share, Graviton, S3 over the network
COLD_START_SECONDS = 1.0  # billed init of a new environment: the imports take 0.84 s here, no bytecode
S3_MB_PER_SECOND = 80.0  # one GET stream from Lambda to S3
TRANSITIONS_PARENT = 5  # Extract, Train, Map, Merge, and the end
TRANSITIONS_PER_SHARD = 2  # each child execution: its Task state, and its end
PART_MB = 8  # the snapshot's multipart upload part size


@dataclass(frozen=True)
class Scenario:
    name: str
    users: int
    items: int
    ratings: int
    users_per_shard: int
    max_concurrency: int
    # seconds measured here (see SCENARIOS for the command that measured each)
    extract_seconds: float
    train_seconds: float
    predict_seconds_per_shard: float
    merge_seconds: float
    model_mb: float
    model_load_seconds: float  # parsing the downloaded model (np.load)
    snapshot_mb: float
    # memory each step is given (template parameters)
    extract_mb: int = 1024
    train_mb: int = 3008
    predict_mb: int = 2048
    merge_mb: int = 1024

    @property
    def shards(self) -> int:
        return math.ceil(self.users / self.users_per_shard)

    @property
    def environments(self) -> int:
        """Predictor environments: each downloads the model once, then serves shards warm."""
        return min(self.shards, self.max_concurrency)


def steps(s: Scenario) -> list[tuple[str, int, int, float]]:
    """(step, invocations, memory MB, billed seconds in all) for one run."""
    transfer = s.model_mb / S3_MB_PER_SECOND  # the model, up (Train) or down (Predict, Merge)
    model = transfer + s.model_load_seconds * LAMBDA_FACTOR
    snapshot = s.snapshot_mb / S3_MB_PER_SECOND
    return [
        ("Extract", 1, s.extract_mb, s.extract_seconds * LAMBDA_FACTOR + COLD_START_SECONDS),
        ("Train", 1, s.train_mb, s.train_seconds * LAMBDA_FACTOR + COLD_START_SECONDS + snapshot + transfer),
        (
            "Predict",
            s.shards,
            s.predict_mb,
            s.shards * s.predict_seconds_per_shard * LAMBDA_FACTOR
            + s.environments * (COLD_START_SECONDS + model),
        ),
        ("Merge", 1, s.merge_mb, s.merge_seconds * LAMBDA_FACTOR + COLD_START_SECONDS + model),
    ]


def costs(s: Scenario) -> dict[str, float]:
    rows = steps(s)
    gb_seconds = sum(memory / 1024 * seconds for _step, _n, memory, seconds in rows)
    invocations = sum(n for _step, n, _memory, _seconds in rows)
    puts = math.ceil(s.snapshot_mb / PART_MB) + 1 + 3 + s.shards + 3
    gets = 1 + 1 + s.shards + s.environments + s.shards + 1  # snapshot, plan, heads, models, merge
    return {
        "lambda": gb_seconds * LAMBDA_GB_SECOND + invocations * LAMBDA_REQUEST,
        "gb_seconds": gb_seconds,
        "step_functions": (TRANSITIONS_PARENT + TRANSITIONS_PER_SHARD * s.shards) * STATE_TRANSITION,
        "s3_requests": puts * S3_PUT + gets * S3_GET,
    }


SCENARIOS = [
    # benchmarks/workflow.py --users 10000 --items 5000 --ratings-per-user 100 --users-per-shard 1000:
    # the real state machine locally; seconds inside each handler. Model: 10,000 x 100 user
    # factors and 5,000 x 100 item factors in float64, plus the 1,005,937 seen items.
    Scenario(
        name="10,000 users",
        users=10_000,
        items=5_000,
        ratings=1_005_937,
        users_per_shard=1_000,
        max_concurrency=10,
        extract_seconds=5.49,
        train_seconds=8.32,
        predict_seconds_per_shard=0.39,
        merge_seconds=0.12,
        model_mb=17.0,
        model_load_seconds=0.05,
        snapshot_mb=8.8,
    ),
    # Train (fit 184.7 s and export 5.4 s of CPU), the model (939.7 MB, loaded in 2.53 s) and one
    # shard of 10,000 users (1.78 s, one BLAS thread) measured here on 1,000,000 users x 20,000
    # items, 20 ratings each, SVD with 100 factors. Extract and Merge scaled from the 10,000-user
    # run (per rating, per user). The snapshot: 8 bytes a rating gzipped.
    Scenario(
        name="1,000,000 users",
        users=1_000_000,
        items=20_000,
        ratings=20_000_000,
        users_per_shard=10_000,
        max_concurrency=10,
        extract_seconds=5.49 * 20_000_000 / 1_005_937,
        train_seconds=184.7 + 5.4,
        predict_seconds_per_shard=1.78,
        merge_seconds=0.12 * 1_000_000 / 10_000,
        model_mb=939.7,
        model_load_seconds=2.53,
        snapshot_mb=160.0,
        train_mb=10240,
        predict_mb=4096,
        merge_mb=4096,
    ),
]


def table() -> str:
    lines = [
        "| | " + " | ".join(s.name for s in SCENARIOS) + " |",
        "|---|" + "---|" * len(SCENARIOS),
        "| ratings, items | " + " | ".join(f"{s.ratings:,}, {s.items:,}" for s in SCENARIOS) + " |",
        "| shards (users per shard) | "
        + " | ".join(f"{s.shards:,} ({s.users_per_shard:,})" for s in SCENARIOS)
        + " |",
    ]
    for index, step in enumerate(("Extract", "Train", "Predict", "Merge")):
        cells = []
        for s in SCENARIOS:
            _name, n, memory, seconds = steps(s)[index]
            cells.append(f"{seconds:,.0f} s at {memory:,} MB" + (f" ({n:,} calls)" if n > 1 else ""))
        lines.append(f"| {step} (billed) | " + " | ".join(cells) + " |")
    results = [costs(s) for s in SCENARIOS]
    lines.append("| Lambda GB-seconds | " + " | ".join(f"{r['gb_seconds']:,.0f}" for r in results) + " |")
    lines.append("| Lambda | " + " | ".join(f"${r['lambda']:.4f}" for r in results) + " |")
    lines.append("| Step Functions | " + " | ".join(f"${r['step_functions']:.4f}" for r in results) + " |")
    lines.append("| S3 requests | " + " | ".join(f"${r['s3_requests']:.4f}" for r in results) + " |")
    totals = [r["lambda"] + r["step_functions"] + r["s3_requests"] for r in results]
    lines.append("| **per run** | " + " | ".join(f"**${t:.4f}**" for t in totals) + " |")
    lines.append("| per month, daily runs | " + " | ".join(f"${30 * t:.2f}" for t in totals) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
