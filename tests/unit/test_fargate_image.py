"""The Fargate image, read from its Dockerfile: it installs the dependencies layer's hash-locked
requirements and copies the recommender layer its first stage builds, with the Makefile's command.
tests/integration/test_fargate_image.py builds the image's packages and runs its command."""

from __future__ import annotations

import re

from tests.fargate import DOCKERIGNORE, LAYER_LOCK, PACKAGE, TRAIN_LOCK, dockerfile_instructions
from tests.unit.test_template import ROOT, load_template


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, one list per stage (each starts with its FROM)."""
    stages: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def stage_copies(stage: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """destination -> (the stage copied from, or "" for the build context; source)."""
    copies = {}
    for instruction, arguments in stage:
        if instruction == "COPY":
            *options, source, destination = arguments.split()
            origin = next((o.removeprefix("--from=") for o in options if o.startswith("--from=")), "")
            copies[destination] = (origin, source)
    return copies


def test_dockerfile_installs_the_locks_and_the_package() -> None:
    builder, image = dockerfile_stages()
    # The functions' Python (template Runtime) in both stages.
    assert builder[0] == ("FROM", "python:3.13-slim AS recommender-layer")
    assert image[0] == ("FROM", "python:3.13-slim")
    assert load_template()["Globals"]["Function"]["Runtime"] == "python3.13"
    runs = [arguments for instruction, arguments in image if instruction == "RUN"]
    assert any('"$(uname -m)" = aarch64' in r for r in runs), "the image must refuse to build for x86"
    (install,) = [r for r in runs if "pip install" in r]
    for flag in ("--no-deps", "--require-hashes", "--only-binary=:all:"):
        assert flag in install, flag
    copies = stage_copies(image)
    # The dependencies layer's lock (it holds the SDK too) and the train layer's: what the Train
    # function's layers hold, no other requirement.
    assert copies["/tmp/requirements.lock"] == ("", LAYER_LOCK.relative_to(ROOT).as_posix())
    assert copies["/tmp/requirements-train.lock"] == ("", TRAIN_LOCK.relative_to(ROOT).as_posix())
    assert re.findall(r"--requirement (\S+)", install) == [
        "/tmp/requirements.lock",
        "/tmp/requirements-train.lock",
    ]
    assert ("ENV", "PYTHONPATH=/opt/recommender") in image
    # Surprise's data folder where the image's user (no home) can create it, as the functions have it.
    variables = dict(
        pair.split("=", 1)
        for instruction, arguments in image
        if instruction == "ENV"
        for pair in arguments.split()
    )
    globals_env = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["SURPRISE_DATA_FOLDER"] == globals_env["SURPRISE_DATA_FOLDER"]
    assert image[-1] == ("ENTRYPOINT", '["python", "-m", "recommender.task"]')
    assert any(instruction == "USER" and arguments != "root" for instruction, arguments in image)
    # The Dockerfile's own ignore file lets exactly the copied paths into the build context.
    ignored = DOCKERIGNORE.read_text().splitlines()
    assert "*" in ignored
    for _origin, source in [*stage_copies(builder).values(), *(c for c in copies.values() if not c[0])]:
        assert f"!{source}" in ignored or f"!{source}/" in ignored, source


def test_the_image_holds_the_recommender_layer_not_the_package() -> None:
    """The image's package is the recommender layer's build, by the same command as
    layers/recommender/Makefile's build-RecommenderLayer: only the modules the steps import."""
    builder, image = dockerfile_stages()
    assert stage_copies(builder) == {"/src/": ("", "layers/recommender/")}
    assert ("WORKDIR", "/src") in builder
    makefile = (PACKAGE / "Makefile").read_text()
    (recipe,) = re.findall(r"^build-RecommenderLayer:\n\t@?(.+)$", makefile, re.M)
    expected = recipe.replace("$(PYTHON)", "python").replace("$(ARTIFACTS_DIR)", "/layer")
    assert [a for i, a in builder if i == "RUN"] == [expected]
    # The image takes the build's output, and nothing else of layers/recommender/.
    copies = stage_copies(image)
    assert copies["/opt/recommender"] == ("recommender-layer", "/layer/python")
    assert not [source for _origin, source in copies.values() if source.startswith("layers/recommender")]
