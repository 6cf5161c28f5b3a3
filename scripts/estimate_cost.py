"""What one run costs and how long it takes on AWS, projected from this machine's measurements.

    .venv/bin/python scripts/estimate_cost.py          # the table in docs/scaling.md and docs/deploy.md

The inputs are `MEASURED` (benchmarks/scaling.py at 25 million ratings, every Lambda invocation
in its own process), the published prices and the assumptions below, each with its reason.
docs/scaling.md explains the model; tests/unit/test_deploy.py checks that the docs print this
script's table.

How each step grows (seen between 1M, 5M and 25M ratings, docs/scaling.md):
- Extract: with the ratings (PostgreSQL's sort, the CSV, gzip); memory flat.
- Train: reading and fitting grow with the ratings (SVD's SGD is single-threaded: epochs x ratings);
  the quality evaluation is bounded (a sample of users above 2M ratings); memory grows with the
  ratings and the users' factors.
- Predict: one shard costs its users x the catalogue; shards grow with the users.
- Merge: with the users (it reads every shard).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Published us-east-1 prices: Lambda on arm64, Step Functions Standard, S3 Standard requests, and
# Fargate on ARM64 (Linux) per vCPU-hour and GB-hour (docs/deploy.md, "Training on Fargate").
LAMBDA_GB_SECOND = 0.0000133334
LAMBDA_REQUEST = 0.20 / 1_000_000
STATE_TRANSITION = 0.025 / 1_000
S3_PUT = 0.005 / 1_000
S3_GET = 0.0004 / 1_000
FARGATE_VCPU_HOUR = 0.03238
FARGATE_GB_HOUR = 0.00356

# Assumptions.
CLOUD_FACTOR = 2.0  # seconds on AWS per second measured here: a vCPU share, Graviton, S3 over the network
COLD_START_SECONDS = 1.0  # billed init of a new Lambda environment (the imports), rounded up
LAMBDA_LIMIT_SECONDS = 900
LAMBDA_LIMIT_MB = 10_240
HEADROOM = 0.75  # a step is planned on Lambda only within 75% of its time and memory limits
TRANSITIONS_PARENT = 9  # where to extract (2), Extract, where to train (2), Train, Map, Merge, the end
TRANSITIONS_PER_SHARD = 2  # each child execution: its Task state, and its end
PART_MB = 8  # the snapshot's multipart upload part size
EXTRACT_TASK = (1, 2)  # Extract on Fargate (ExtractCompute=fargate): 1 vCPU / 2 GB, it streams
FARGATE_START_SECONDS = 60  # pulling the image and starting a task
# Fargate (ARM64) sizes: vCPU -> the largest memory (GB) it allows
FARGATE_SIZES = ((2, 16), (4, 30), (8, 60), (16, 120))


@dataclass(frozen=True)
class Measured:
    """One run of benchmarks/scaling.py: the workflow on 25,000,000 ratings (162,000 users x 59,000
    items, MovieLens 25M's shape), SVD with Surprise's defaults (100 factors, 20 epochs), shards of
    5,000 users, every invocation in its own process (seconds inside the handlers)."""

    ratings: int = 25_000_000
    users: int = 162_000
    items: int = 59_000
    extract_seconds: float = 68.6
    train_seconds: float = 214.5  # all of it: reading, the evaluation, the fit, writing the model
    evaluation_seconds: float = 10.8  # bounded: a sample of users holding 2M ratings
    train_peak_mb: float = 1161.0
    train_peak_mb_5m: float = 569.0  # at 5,000,000 ratings (32,400 users): the slope
    users_5m: int = 32_400
    users_per_shard: int = 5_000
    shard_seconds: float = 4.67  # the slowest shard: 5,000 users x 59,000 items
    predict_peak_mb: float = 283.0
    merge_seconds: float = 0.45
    snapshot_mb: float = 255.0  # gzip level 1
    item_side_mb: float = 47.0  # model.npz: 59,000 x 100 factors and biases, float64
    part_mb_per_1000_users: float = 0.8  # a shard's users: 100 factors and the items each rated
    # Train's memory per user, from the arrays' sizes (the measured sizes grow users and ratings
    # together, so they cannot tell the two apart): SVD's 100 float64 user factors (0.8 KB), the
    # id dictionaries and strings and the shard order's sort (about 0.4 KB).
    train_kb_per_user: float = 1.2

    @property
    def train_mb_per_million_ratings(self) -> float:
        """The slope between 5M and 25M ratings, less the users' share of it."""
        slope = (self.train_peak_mb - self.train_peak_mb_5m) / ((self.ratings - 5_000_000) / 1e6)
        users_per_million = (self.users - self.users_5m) / ((self.ratings - 5_000_000) / 1e6)
        return slope - users_per_million * self.train_kb_per_user / 1024


MEASURED = Measured()


@dataclass(frozen=True)
class Scenario:
    name: str
    users: int
    items: int
    ratings: int
    users_per_shard: int
    max_concurrency: int
    predict_mb: int = 1769  # one full vCPU: the shard's matrix products use it
    extract_mb: int = 1024
    merge_mb: int = 1024

    @property
    def shards(self) -> int:
        return math.ceil(self.users / self.users_per_shard)

    @property
    def environments(self) -> int:
        """Predictor environments: each pays one cold start, then serves shards warm."""
        return min(self.shards, self.max_concurrency)


@dataclass(frozen=True)
class Step:
    name: str
    where: str  # "Lambda, 1,024 MB" or "Fargate, 2 vCPU / 16 GB"
    calls: int
    seconds: float  # billed seconds, all calls together
    wall_seconds: float  # the step's share of the run's wall time
    cost: float
    fits_lambda: bool = True


def _scale(value: float, measured: float, scenario: float) -> float:
    return value * scenario / measured


def train_memory_mb(ratings: int, users: int, m: Measured = MEASURED) -> float:
    return (
        m.train_peak_mb
        + m.train_mb_per_million_ratings * (ratings - m.ratings) / 1e6
        + m.train_kb_per_user / 1024 * (users - m.users)
    )


def fargate_size(memory_mb: float) -> tuple[int, int] | None:
    """The smallest Fargate size with a quarter more memory than the peak, or None."""
    for vcpu, gb in FARGATE_SIZES:
        if memory_mb / HEADROOM <= gb * 1024:
            return vcpu, gb
    return None


def lambda_cost(memory_mb: int, seconds: float, calls: int) -> float:
    return memory_mb / 1024 * seconds * LAMBDA_GB_SECOND + calls * LAMBDA_REQUEST


def steps(s: Scenario, m: Measured = MEASURED) -> list[Step]:
    extract = _scale(m.extract_seconds, m.ratings, s.ratings) * CLOUD_FACTOR + COLD_START_SECONDS
    if extract <= HEADROOM * LAMBDA_LIMIT_SECONDS:
        extract_step = Step(
            "Extract",
            f"Lambda, {s.extract_mb:,} MB",
            1,
            extract,
            extract,
            lambda_cost(s.extract_mb, extract, 1),
        )
    else:  # ExtractCompute=fargate
        vcpu, gb = EXTRACT_TASK
        seconds = extract + FARGATE_START_SECONDS
        cost = seconds / 3600 * (vcpu * FARGATE_VCPU_HOUR + gb * FARGATE_GB_HOUR)
        extract_step = Step("Extract", f"Fargate, {vcpu} vCPU / {gb} GB", 1, seconds, seconds, cost)
    train_local = m.evaluation_seconds + _scale(m.train_seconds - m.evaluation_seconds, m.ratings, s.ratings)
    train = train_local * CLOUD_FACTOR + COLD_START_SECONDS
    memory = train_memory_mb(s.ratings, s.users, m)
    on_lambda = train <= HEADROOM * LAMBDA_LIMIT_SECONDS and memory <= HEADROOM * LAMBDA_LIMIT_MB
    if on_lambda:
        train_mb = max(1769, 512 * math.ceil(memory / HEADROOM / 512))
        cost = lambda_cost(train_mb, train, 1)
        train_step = Step("Train", f"Lambda, {train_mb:,} MB", 1, train, train, cost)
    else:
        size = fargate_size(memory)
        vcpu, gb = size if size is not None else FARGATE_SIZES[-1]
        hours = (train + FARGATE_START_SECONDS) / 3600
        cost = hours * (vcpu * FARGATE_VCPU_HOUR + gb * FARGATE_GB_HOUR)
        where = f"Fargate, {vcpu} vCPU / {gb} GB" + ("" if size is not None else " (too small)")
        billed = train + FARGATE_START_SECONDS
        train_step = Step("Train", where, 1, billed, billed, cost, fits_lambda=size is not None)
    shard = _scale(m.shard_seconds, m.users_per_shard * m.items, s.users_per_shard * s.items) * CLOUD_FACTOR
    shard += s.users_per_shard / 1000 * m.part_mb_per_1000_users / 80.0  # its users' part, at 80 MB/s
    warmup = COLD_START_SECONDS + _scale(m.item_side_mb, m.items, s.items) / 80.0
    predict = s.shards * shard + s.environments * warmup
    waves = math.ceil(s.shards / s.max_concurrency)
    merge = _scale(m.merge_seconds, m.users, s.users) * CLOUD_FACTOR + COLD_START_SECONDS
    return [
        extract_step,
        train_step,
        Step(
            "Predict",
            f"Lambda, {s.predict_mb:,} MB",
            s.shards,
            predict,
            waves * shard + warmup,
            lambda_cost(s.predict_mb, predict, s.shards),
            shard <= HEADROOM * LAMBDA_LIMIT_SECONDS,
        ),
        Step(
            "Merge",
            f"Lambda, {s.merge_mb:,} MB",
            1,
            merge,
            merge,
            lambda_cost(s.merge_mb, merge, 1),
            merge <= HEADROOM * 300,
        ),
    ]


def other_costs(s: Scenario, m: Measured = MEASURED) -> dict[str, float]:
    snapshot_mb = _scale(m.snapshot_mb, m.ratings, s.ratings)
    puts = math.ceil(snapshot_mb / PART_MB) + 2 + 2 * s.shards + 5  # snapshot, model parts, shards, docs
    gets = 2 + 3 * s.shards + s.environments + s.shards + 2  # plan, parts, heads, item side, Merge
    return {
        "step_functions": (TRANSITIONS_PARENT + TRANSITIONS_PER_SHARD * s.shards) * STATE_TRANSITION,
        "s3_requests": puts * S3_PUT + gets * S3_GET,
    }


SCENARIOS = [
    Scenario("162,000 users (measured)", 162_000, 59_000, 25_000_000, 5_000, 10),
    Scenario("1,000,000 users", 1_000_000, 59_000, 20_000_000, 10_000, 100),
    Scenario("10,000,000 users", 10_000_000, 59_000, 200_000_000, 10_000, 500),
]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:,.1f} min" if seconds >= 90 else f"{seconds:,.0f} s"


def table() -> str:
    lines = [
        "| | " + " | ".join(s.name for s in SCENARIOS) + " |",
        "|---|" + "---|" * len(SCENARIOS),
        "| ratings, items | " + " | ".join(f"{s.ratings:,}, {s.items:,}" for s in SCENARIOS) + " |",
        "| shards (users per shard), concurrency | "
        + " | ".join(f"{s.shards:,} ({s.users_per_shard:,}), {s.max_concurrency:,}" for s in SCENARIOS)
        + " |",
    ]
    all_steps = [steps(s) for s in SCENARIOS]
    for index, name in enumerate(("Extract", "Train", "Predict", "Merge")):
        cells = []
        for row in all_steps:
            step = row[index]
            calls = f", {step.calls:,} calls" if step.calls > 1 else ""
            warning = "" if step.fits_lambda else " **over the limit**"
            cells.append(f"{step.where}: {step.seconds:,.0f} s billed{calls}{warning}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    walls = [sum(step.wall_seconds for step in row) for row in all_steps]
    lines.append("| wall time of a run | " + " | ".join(_minutes(w) for w in walls) + " |")
    others = [other_costs(s) for s in SCENARIOS]
    compute = [sum(step.cost for step in row) for row in all_steps]
    lines.append("| Lambda and Fargate | " + " | ".join(f"${c:.4f}" for c in compute) + " |")
    lines.append("| Step Functions | " + " | ".join(f"${o['step_functions']:.4f}" for o in others) + " |")
    lines.append("| S3 requests | " + " | ".join(f"${o['s3_requests']:.4f}" for o in others) + " |")
    totals = [c + o["step_functions"] + o["s3_requests"] for c, o in zip(compute, others)]
    lines.append("| **per run** | " + " | ".join(f"**${t:.2f}**" for t in totals) + " |")
    lines.append("| per month, daily runs | " + " | ".join(f"${30 * t:.2f}" for t in totals) + " |")
    return "\n".join(lines)


def lambda_limits(m: Measured = MEASURED) -> str:
    """The most ratings each step handles on Lambda, by the same model."""
    extract = (HEADROOM * LAMBDA_LIMIT_SECONDS - COLD_START_SECONDS) / CLOUD_FACTOR
    extract_ratings = extract / m.extract_seconds * m.ratings
    train = (HEADROOM * LAMBDA_LIMIT_SECONDS - COLD_START_SECONDS) / CLOUD_FACTOR - m.evaluation_seconds
    train_time_ratings = train / (m.train_seconds - m.evaluation_seconds) * m.ratings
    per_rating_at_this_density = (
        m.train_mb_per_million_ratings / 1e6 + m.train_kb_per_user / 1024 * m.users / m.ratings
    )
    train_memory_ratings = (
        m.ratings + (HEADROOM * LAMBDA_LIMIT_MB - m.train_peak_mb) / per_rating_at_this_density
    )
    return "\n".join(
        [
            f"- Extract: about {extract_ratings / 1e6:,.0f} million ratings (time).",
            f"- Train: about {train_time_ratings / 1e6:,.0f} million ratings by time, about"
            f" {train_memory_ratings / 1e6:,.0f} million by memory (at MovieLens's 154 ratings per user).",
        ]
    )


if __name__ == "__main__":
    print(table())
    print()
    print(lambda_limits())
