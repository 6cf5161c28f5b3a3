"""What a folder of installed packages holds, and what their declared requirements leave unmet:
the layers, the train layer and the Fargate image are installed with --no-deps from a lock, so the
lock alone must close over what its packages need."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from email.message import Message
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement

#: a package's name as pip compares them
Installed = dict[str, tuple[str, Message]]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_packages(*folders: Path) -> Installed:
    """{name: (version, METADATA)} of every distribution installed in the folders."""
    installed: Installed = {}
    for folder in folders:
        for metadata in folder.glob("*.dist-info/METADATA"):
            message = Parser().parsestr(metadata.read_text())
            installed[canonical(message["Name"])] = (message["Version"], message)
    return installed


def unmet_requirements(
    installed: Installed,
    of: Iterable[str],
    environment: Mapping[str, str],
    extras: Mapping[str, set[str]] | None = None,
    allowed_missing: set[tuple[str, str]] | None = None,
) -> list[str]:
    """Each requirement of the packages `of` that `installed` lacks or holds at a version outside its
    range, for this environment and the extras asked of each package; `allowed_missing` holds the
    (package, requirement) pairs declared but never imported."""
    problems = []
    for name in of:
        wanted = (extras or {}).get(name) or {""}
        for line in installed[name][1].get_all("Requires-Dist") or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not any(
                requirement.marker.evaluate({**environment, "extra": extra}) for extra in wanted
            ):
                continue
            needed = canonical(requirement.name)
            if (name, needed) in (allowed_missing or set()):
                continue
            if needed not in installed:
                problems.append(f"{name} needs {needed}, which is not installed")
            elif not requirement.specifier.contains(installed[needed][0], prereleases=True):
                problems.append(f"{name} needs {line}, not {needed} {installed[needed][0]}")
    return problems
