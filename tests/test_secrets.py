"""The API token and the Flower password appear nowhere: not in logs, task messages, Redis,
results or Flower."""

from __future__ import annotations

import json

import pytest
import redis
import requests

from faceswap_jobs.errors import FaceSwapError
from faceswap_jobs.ops.sandbox import ManagedProcess, free_port, http_ok, python_module, wait_until
from tests.support.emulator import API_TOKEN, Emulator
from tests.support.jobs import unique_tag
from tests.support.redis import redis_dump
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
FLOWER_PASSWORD = "flower-pw-8d2e61b7c3"


@pytest.fixture(scope="module")
def flower(stack: Stack):
    port = free_port()
    process = ManagedProcess(
        "flower",
        python_module("faceswap_jobs", "flower"),
        stack.logs / "flower.log",
        stack.env(FACESWAP_FLOWER_PORT=str(port), FACESWAP_FLOWER_PASSWORD=FLOWER_PASSWORD),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(http_ok(f"{url}/healthcheck"), 60.0, "Flower", process.log_path)
        yield url, process
    finally:
        process.stop()


def test_token_never_leaves_the_worker(
    stack: Stack, fresh: Emulator, flower: tuple[str, ManagedProcess], redis_client: redis.Redis
) -> None:
    flower_url, flower_process = flower
    auth = ("admin", FLOWER_PASSWORD)
    worker = stack.start_worker("secrets", "--concurrency=4")
    tag = unique_tag()
    fresh.configure(
        rules=[
            {"source_contains": f"{tag}-fail", "status": 400, "code": "bad_request",
             "message": "rejected", "times": None},
            {"source_contains": f"{tag}-flaky", "status": 500, "code": "api_error",
             "message": "fetch failed", "times": 1},
            {"source_contains": f"{tag}-reset", "kind": "reset", "times": 1},
        ]
    )  # fmt: skip
    jobs = [
        stack.producer.submit_swap(fresh.sample("astronaut.png", f"{tag}-{kind}"), fresh.sample())
        for kind in ("ok", "fail", "flaky", "reset")
    ]
    records = stack.wait_finished([job.id for job in jobs], timeout_s=90)
    assert [str(r.state) for r in records] == ["succeeded", "failed", "succeeded", "succeeded"]
    assert records[3].history[0].error is not None
    assert records[3].history[0].error["code"] == "connection_reset"

    def flower_has_all() -> bool:
        tasks = requests.get(f"{flower_url}/api/tasks", auth=auth, timeout=5).json()
        return all(tasks.get(job.id, {}).get("state") in ("SUCCESS", "FAILURE") for job in jobs)

    wait_until(flower_has_all, 30.0, "Flower to see every task", flower_process.log_path)
    assert requests.get(f"{flower_url}/api/tasks", timeout=5).status_code == 401
    flower_views = [requests.get(f"{flower_url}/api/tasks", auth=auth, timeout=5).text]
    for job in jobs:
        info = requests.get(f"{flower_url}/api/task/info/{job.id}", auth=auth, timeout=5)
        assert info.status_code == 200
        flower_views.append(info.text)
        flower_views.append(requests.get(f"{flower_url}/task/{job.id}", auth=auth, timeout=5).text)
    assert json.loads(flower_views[0])[jobs[1].id]["exception"].startswith("BadRequestError")

    status_json = stack.cli("status", "--json", jobs[1].id)
    assert json.loads(status_json)["last_error"]["code"] == "bad_request"
    with pytest.raises(FaceSwapError) as caught:
        jobs[1].result(timeout=5)

    worker.stop(grace_s=15.0)
    places = {
        "worker log": worker.log_text(),
        "flower log": flower_process.log_text(),
        "redis": redis_dump(redis_client),
        "flower views": "\n".join(flower_views),
        "status --json": status_json,
        "raised error": repr(caught.value) + str(caught.value),
        "emulator ledger": json.dumps(fresh.ledger()),
    }
    assert "faceswap.swap" in places["redis"] + places["worker log"]
    for place, text in places.items():
        assert API_TOKEN not in text, f"the API token leaked into the {place}"
        assert FLOWER_PASSWORD not in text, f"the Flower password leaked into the {place}"
