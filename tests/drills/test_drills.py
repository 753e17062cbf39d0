"""The drill suite at test size: each drill runs jobs through real workers, a real redis-server
with an append-only file and the emulator, strikes in the middle, and accounts for every job
and every billed call (`bench.common.drill`). `python -m bench.drills` runs them full size.

Each drill must hold: no job lost or stuck, no call the records do not show, every job billed
twice explained by a call cut mid-flight, and no worker exiting unless the drill stopped it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.common.drill import VISIBILITY_S, DrillResult, Scenario, run, scenarios, system

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


def test_a_message_redis_lost_is_sent_again(tmp_path: Path) -> None:
    """A crash between a worker's BRPOP and its reply pops a message nobody receives; the job
    record still says `queued`. Simulated by popping the messages ourselves."""
    scenario = Scenario("lost-message", lambda drill: None, 0, workers=1,
                        env={"FACESWAP_LEASE_TTL_S": "3"})  # fmt: skip
    with system(scenario, tmp_path) as drill:
        retired = drill.retire(drill.workers[0])
        retired.stop()
        source = drill.emulator.sample("astronaut.png")
        jobs = [drill.producer.submit_swap(f"{source}?job={i}", source) for i in range(3)]
        client = drill.producer.redis
        assert client.delete("faceswap.interactive") == 1
        drill.start_worker()
        results = [job.result(timeout=60) for job in jobs]
        ledger = drill.emulator.ledger()
    assert all(result.image_url for result in results)
    assert len(ledger) == 3
