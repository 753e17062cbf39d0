"""What the package declares matches what it uses: every dependency is needed, the emulator's own
ones are an extra, lower bounds are ones our dependencies accept, and the version is reachable."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from importlib.metadata import distribution, packages_distributions, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import faceswap_jobs

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "faceswap_jobs"
EMULATOR = PACKAGE / "emulator"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME = [Requirement(line) for line in PROJECT["project"]["dependencies"]]
EMULATOR_EXTRA = [
    Requirement(line) for line in PROJECT["project"]["optional-dependencies"]["emulator"]
]

NEEDED_WITHOUT_AN_IMPORT = {
    "flower": "run as Celery's `flower` command by `faceswap-jobs flower`",
    "httptools": "uvicorn's httptools protocol, which callbacks/serving.py subclasses",
    "uvloop": "uvicorn's event loop (loop='auto') for the receiver",
}
IMPORTED_UNDECLARED = {
    "billiard": "Celery's pool library: its version is Celery's to choose",
    "scikit-image": "only emulator/samples/generate.py, run by hand to remake the samples",
}


def imported_distributions(files: list[Path]) -> set[str]:
    """Distributions whose top-level modules these files import (ours and the stdlib left out)."""
    owners = packages_distributions()
    found: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top != "faceswap_jobs" and top not in sys.stdlib_module_names:
                    found.update(canonicalize_name(d) for d in owners.get(top, [top]))
    return found


def sources(root: Path, *, skip: Path | None = None) -> list[Path]:
    return [
        path
        for path in root.rglob("*.py")
        if path.parent.name != "samples" and (skip is None or skip not in path.parents)
    ]


def names(requirements: list[Requirement]) -> set[str]:
    return {canonicalize_name(r.name) for r in requirements}


def test_every_runtime_dependency_is_used() -> None:
    used = imported_distributions(sources(PACKAGE)) | set(NEEDED_WITHOUT_AN_IMPORT)
    unused = names(RUNTIME + EMULATOR_EXTRA) - used
    assert not unused, f"declared but never imported: {sorted(unused)}"


def test_everything_imported_is_declared() -> None:
    declared = names(RUNTIME + EMULATOR_EXTRA) | set(IMPORTED_UNDECLARED)
    undeclared = imported_distributions(sources(PACKAGE)) - declared
    assert not undeclared, f"imported but not declared: {sorted(undeclared)}"


def test_the_emulator_extra_is_what_only_the_emulator_imports() -> None:
    production = imported_distributions(sources(PACKAGE, skip=EMULATOR))
    emulator_only = imported_distributions(sources(EMULATOR)) - production
    assert emulator_only == names(EMULATOR_EXTRA)
    assert not production & names(EMULATOR_EXTRA), "production code imports the emulator extra"


def lower_bound(requirement: Requirement) -> Version | None:
    bounds = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
    return max(bounds, default=None)


def test_lower_bounds_are_accepted_by_our_dependencies() -> None:
    """A lower bound a dependency refuses (redis-py 5 with kombu[redis] 5.7) lets pip pick a
    combination that cannot install or run: each of ours must satisfy what the installed
    dependencies ask of it."""
    ours = {canonicalize_name(r.name): r for r in RUNTIME + EMULATOR_EXTRA}
    pending = [(r, set(r.extras)) for r in RUNTIME + EMULATOR_EXTRA]
    seen: set[tuple[str, frozenset[str]]] = set()
    refused = []
    while pending:
        requirement, extras = pending.pop()
        key = (canonicalize_name(requirement.name), frozenset(extras))
        if key in seen:
            continue
        seen.add(key)
        for line in distribution(requirement.name).requires or []:
            child = Requirement(line)
            if child.marker and not any(
                child.marker.evaluate({"extra": extra}) for extra in extras or {""}
            ):
                continue
            name = canonicalize_name(child.name)
            floor = lower_bound(ours[name]) if name in ours else None
            if floor is not None and not child.specifier.contains(floor, prereleases=True):
                refused.append(f"{requirement.name} wants {child}, ours allows {ours[name]}")
            pending.append((child, set(child.extras)))
    assert not refused, refused


def test_version_matches_the_installed_metadata() -> None:
    assert faceswap_jobs.__version__ == version("faceswap-jobs") == PROJECT["project"]["version"]


def test_the_command_prints_its_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "faceswap_jobs", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"faceswap-jobs {faceswap_jobs.__version__}"


def test_the_package_says_it_is_typed() -> None:
    assert (PACKAGE / "py.typed").is_file()
    assert "py.typed" in PROJECT["tool"]["setuptools"]["package-data"]["faceswap_jobs"]


BLOCK_HTTPX = "import sys; sys.modules['httpx'] = None; "


def test_the_emulator_without_its_extra_names_the_extra() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_HTTPX + "import faceswap_jobs.emulator"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "pip install 'faceswap-jobs[emulator]'" in done.stderr


def test_the_emulator_command_without_its_extra_exits_with_the_hint() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCK_HTTPX + "sys.argv = ['faceswap-jobs', 'emulator']; "
            "from faceswap_jobs.ops.cli import main; main()",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "the emulator needs httpx" in done.stderr
    assert "Traceback" not in done.stderr
