"""The drill suite at test size: each drill runs jobs through real workers, a real redis-server
with an append-only file and the emulator, strikes in the middle, and accounts for every job
and every billed call (`bench.common.drill`). `python -m bench.drills` runs them full size.

Each drill must hold: no job lost or stuck, no call the records do not show, every job billed
twice explained by a call cut mid-flight, and no worker exiting unless the drill stopped it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.common.drill import VISIBILITY_S, DrillResult, run, scenarios

pytestmark = [pytest.mark.integration, pytest.mark.drill]

JOBS = 150
REDELIVERY_SLACK_S = 15
"""The promise: a dead worker's messages are back within the visibility timeout + 15 s."""


def _drill(name: str, tmp_path: Path) -> DrillResult:
    result = run(scenarios(JOBS)[name], tmp_path / name)
    assert result.lost == 0, result
    assert result.stuck == {}, result
    assert result.unrecorded_calls == 0, result
    assert result.duplicates == result.duplicates_explained, result
    assert result.worker_exits == [], result
    assert result.succeeded + sum(result.failed.values()) == JOBS, result
    return result


@pytest.mark.parametrize("name", ["redis-sigterm", "redis-sigkill"])
def test_a_redis_restart_loses_nothing_and_bills_nothing_twice(name: str, tmp_path: Path) -> None:
    result = _drill(name, tmp_path)
    assert result.succeeded == JOBS, result
    assert result.duplicates == 0, result
    assert result.billed_calls == JOBS, result


def test_a_killed_worker_s_jobs_come_back_within_the_visibility_timeout(tmp_path: Path) -> None:
    result = _drill("worker-sigkill-threads", tmp_path)
    assert result.succeeded == JOBS, result
    assert result.redelivered_after_s is not None, "no call was cut: the kill struck no job"
    assert result.redelivered_after_s <= VISIBILITY_S + REDELIVERY_SLACK_S, result


def test_a_deploy_finishes_running_calls_and_calls_nothing_twice(tmp_path: Path) -> None:
    result = _drill("deploy-sigterm", tmp_path)
    assert result.succeeded == JOBS, result
    assert result.duplicates == 0, result
    assert result.redelivered_after_s is None, "a call was cut by the deploy"
