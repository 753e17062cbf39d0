"""The layering of docs/architecture.md that a test can see; lint-imports checks the rest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "faceswap_jobs"
WORKER_SIDE = ("worker", "callbacks", "client", "limits", "ops", "emulator")


def test_importing_the_producer_loads_no_worker_code() -> None:
    code = (
        "import json, sys, faceswap_jobs.producer; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('faceswap_jobs'))))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
    )

    assert "faceswap_jobs.producer.submit" in loaded
    assert "faceswap_jobs.producer.batch" in loaded
    assert [m for m in loaded if m.split(".")[1:2] and m.split(".")[1] in WORKER_SIDE] == []


def modules_outside(folder: str, *needles: str) -> list[str]:
    """Modules of the package, outside `folder` and `keys.py`, whose code contains a needle."""
    return [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.parent.name != folder and path.name != "keys.py"
        if any(needle in path.read_text() for needle in needles)
    ]


def test_only_the_jobs_package_names_a_job_record_key() -> None:
    """Every write to `{prefix}:job:{id}` and its history goes through `faceswap_jobs.jobs`."""
    assert modules_outside("jobs", ".job(", ".history(", ".lease(") == []


def test_only_the_limits_read_the_limiter_and_breaker_keys() -> None:
    """Everyone else reads them through `Limits.snapshot()`."""
    assert modules_outside("limits", ".rate(", ".bulk_rate(", ".breaker(") == []
