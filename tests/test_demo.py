"""`make demo` as a newcomer runs it: every sample swap succeeds, results land in a fresh folder,
and on a shared Redis the demo writes only under a prefix of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from PIL import Image

from faceswap_jobs.ops.demo import HEADER_PX, LABEL_PX, THUMB_PX

pytestmark = pytest.mark.integration


def test_the_demo_runs_end_to_end_on_a_shared_redis(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    before = set(redis_client.keys("*"))
    env = {"FACESWAP_REDIS_URL": redis_url, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    done = subprocess.run(
        [sys.executable, "-m", "faceswap_jobs", "demo", "--count", "3", "--output",
         str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [run] = list((tmp_path / "out").iterdir())
    results = json.loads((run / "results.json").read_text())
    assert [r["state"] for r in results] == ["succeeded"] * 3
    assert len(list(run.glob("swap-*.png"))) == 3
    with Image.open(run / "contact-sheet.png") as sheet:
        assert sheet.size == (LABEL_PX + 3 * THUMB_PX, HEADER_PX + 3 * THUMB_PX)
    added = set(redis_client.keys("*")) - before
    # Celery's bookkeeping: results under the (fresh) job ids, bindings, the unacked index.
    celery_own = ("_kombu.", "celery-task-meta-", "unacked")
    ours = {key for key in added if not key.startswith(celery_own)}
    assert ours and all(key.startswith("demo-") for key in ours), sorted(ours)[:5]
