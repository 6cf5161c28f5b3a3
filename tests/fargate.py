"""What the Fargate tests (tests/*/test_fargate_*.py) share: the names the template's Fargate
resources resolve to in these tests, the Dockerfile's instructions, Fargate's own task sizes, and
the environments `recommender.task` runs with."""

from __future__ import annotations

import importlib.resources
import io
import json
import re
from typing import Any

import jsonschema
import numpy as np

from recommender import task
from recommender.config import RunConfig
from tests.unit.test_template import BUCKET, PREFIX, ROOT

DOCKERFILE = ROOT / "containers" / "train" / "Dockerfile"
DOCKERIGNORE = DOCKERFILE.with_name("Dockerfile.dockerignore")
LAYER_LOCK = ROOT / "layers" / "dependencies" / "requirements.lock"
TRAIN_LOCK = ROOT / "layers" / "dependencies" / "requirements-train.lock"
PACKAGE = ROOT / "layers" / "recommender"

FARGATE_STATE = "Train the model on Fargate"
TRAIN_STATE = "Train the model and plan the shards"
CHOICE_STATE = "Choose where to train"
LOOKUP_STATE = "Look up where to train"
CONTAINER = "train"
CONDITION = "TrainsOnFargate"
FARGATE_RESOURCES = {
    "TrainCluster",
    "TrainTaskLogGroup",
    "TrainTaskSecurityGroup",
    "TrainTaskExecutionRole",
    "TrainTaskRole",
    "TrainTaskDefinition",
}

# What the intrinsics of the Fargate resources resolve to in these tests.
ACCOUNT, REGION = "123456789012", "us-east-1"
CLUSTER = "recommender-TrainCluster-AbCdEf123456"
TASK_DEFINITION = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/recommender-train:3"
NAMES = {
    "TrainCluster": CLUSTER,
    "TrainCluster.Arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}",
    "TrainTaskDefinition": TASK_DEFINITION,
    "TrainTaskRole.Arn": f"arn:aws:iam::{ACCOUNT}:role/recommender-TrainTaskRole-1A2B3C",
    "TrainTaskExecutionRole.Arn": f"arn:aws:iam::{ACCOUNT}:role/recommender-TrainTaskExecutionRole-4D5E6F",
    "TrainTaskLogGroup": "/ecs/recommender-train",
    "TrainTaskLogGroup.Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/recommender-train:*",
    "TrainTaskSecurityGroup.GroupId": "sg-0fedcba9876543210",
    "VpcId": "vpc-0abc12345678def90",
    "TrainImageUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/recommender-train:1.0",
}
SUBNETS = ["subnet-0aaa1111bbbb2222c", "subnet-0ddd3333eeee4444f"]


EXTRACT_CONDITION = "ExtractsOnFargate"
EXTRACT_FARGATE_STATE = "Extract the ratings on Fargate"
EXTRACT_STATE = "Extract the ratings from PostgreSQL"
EXTRACT_CHOICE_STATE = "Choose where to extract"
EXTRACT_LOOKUP_STATE = "Look up where to extract"
EXTRACT_CONTAINER = "extract"
EXTRACT_RESOURCES = {
    "ExtractCluster",
    "ExtractTaskLogGroup",
    "ExtractTaskExecutionRole",
    "ExtractTaskRole",
    "ExtractTaskDefinition",
}
EXTRACT_NAMES = {
    "ExtractCluster": "recommender-ExtractCluster-GhIjKl789012",
    "ExtractCluster.Arn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/recommender-ExtractCluster-GhIjKl789012",
    "ExtractTaskDefinition": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/recommender-extract:2",
    "ExtractTaskRole.Arn": f"arn:aws:iam::{ACCOUNT}:role/recommender-ExtractTaskRole-7G8H9I",
    "ExtractTaskExecutionRole.Arn": f"arn:aws:iam::{ACCOUNT}:role/recommender-ExtractTaskExecRole-0J1K2L",
    "RecommendationFunctionSecurityGroup.GroupId": "sg-0a1b2c3d4e5f60718",
}


def fargate_memory_table(cpu: str) -> list[int]:
    """The memory (MiB) Fargate allows with `cpu` units, from cfn-lint's own table (rule E3047)."""
    import cfnlint.data.schemas.extensions.aws_ecs_taskdefinition as schemas

    schema = json.loads(importlib.resources.files(schemas).joinpath("fargate_cpu_memory.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [
        memory
        for memory in range(512, 131072 + 1, 512)
        if validator.is_valid({"RequiresCompatibilities": ["FARGATE"], "Cpu": cpu, "Memory": memory})
    ]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            found.append((instruction.upper(), arguments.strip()))
    return found


def ratings(users: int = 60, items: int = 30, per_user: int = 8) -> list[tuple[str, str, float]]:
    rng = np.random.default_rng(11)
    rows = []
    for user in range(users):
        for item in rng.choice(items, size=per_user, replace=False):
            rows.append((f"u{user}", f"i{item}", float(rng.integers(1, 6))))
    return rows


RUN_ID = "fargate-run-1"
CONFIG = RunConfig.from_input({"users_per_shard": 25, "top_n": 5}).to_dict()


def task_environment(**overrides: str) -> dict[str, str]:
    environment = {
        "RECOMMENDER_BUCKET": BUCKET,
        "RECOMMENDER_PREFIX": PREFIX,
        "POWERTOOLS_SERVICE_NAME": "recommender",
        "RUN_ID": RUN_ID,
        "RUN_CONFIG": json.dumps(CONFIG),
    }
    environment.update(overrides)
    return {k: v for k, v in environment.items() if v is not None}


EXTRACT_INPUT = {"users_per_shard": 25, "top_n": 5, "source": {"timestamp_column": None}}


def extract_environment(database_url: str, **overrides: str | None) -> dict[str, str]:
    environment: dict[str, str | None] = {
        "RECOMMENDER_BUCKET": BUCKET,
        "RECOMMENDER_PREFIX": PREFIX,
        "POWERTOOLS_SERVICE_NAME": "recommender",
        "DATABASE_URL": database_url,
        "RUN_ID": "exec-extract-1",
        "RUN_INPUT": json.dumps(EXTRACT_INPUT),
    }
    environment.update(overrides)
    return {k: v for k, v in environment.items() if v is not None}


def run_extract_task(s3: Any, environment: dict[str, str], *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = task.main(environment, s3=s3, stdout=out, stderr=err, argv=argv or ("extract",))
    return code, out.getvalue(), err.getvalue()
