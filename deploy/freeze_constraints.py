"""Print constraints.txt: the exact versions of the runtime dependencies, as installed here.

    .venv/bin/pip install -e '.[dev,emulator]'
    .venv/bin/python deploy/freeze_constraints.py > constraints.txt

`pip freeze` would also pin the test and lint tools sharing the venv, and the project itself.
This walks the requirement graph instead: from pyproject.toml's `[project] dependencies` and
the `emulator` extra (the image installs it) through each installed distribution's metadata,
extras followed and markers evaluated for this interpreter (run it on Linux with the image's
Python minor version, 3.11). The Dockerfile
installs with the result, so an image gets the versions the tests ran against rather than
whatever was newest on the day it was built.
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
IMAGE_EXTRA = "emulator"
"""The extra the Dockerfile installs along with the runtime dependencies."""
HEADER = """\
# Exact versions of the runtime dependencies (pyproject.toml [project] dependencies and the
# emulator extra, with all they pull in), the ones the tests ran against. The Dockerfile
# installs with
#   pip install --constraint constraints.txt '/src[emulator]'
# Regenerate after changing a dependency or upgrading the venv:
#   .venv/bin/pip install -e '.[dev,emulator]'
#   .venv/bin/python deploy/freeze_constraints.py > constraints.txt
"""


def runtime_requirements(pyproject: Path) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = project["dependencies"] + project["optional-dependencies"][IMAGE_EXTRA]
    return [Requirement(line) for line in lines]


def applies(requirement: Requirement, extras: set[str]) -> bool:
    """Whether a requirement holds here, for a dependent that asked for `extras`."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras or {""})


def closure(roots: list[Requirement]) -> dict[str, str]:
    """Installed name -> version of every distribution the roots need, transitively."""
    pinned: dict[str, str] = {}
    wanted: dict[str, set[str]] = {}
    pending: list[tuple[Requirement, set[str]]] = [(root, set()) for root in roots]
    while pending:
        requirement, parent_extras = pending.pop()
        if not applies(requirement, parent_extras):
            continue
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if name in pinned and extras <= wanted[name]:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            sys.exit(f"{name} is not installed: pip install -e '.[dev,emulator]' first")
        wanted[name] = wanted.get(name, set()) | extras
        pinned[name] = dist.version
        pending.extend((Requirement(line), wanted[name]) for line in dist.requires or [])
    return pinned


def main() -> None:
    pins = closure(runtime_requirements(PYPROJECT))
    lines = [f"{name}=={version}" for name, version in sorted(pins.items())]
    sys.stdout.write(HEADER + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
