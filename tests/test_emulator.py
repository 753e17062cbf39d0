"""The emulator as a black box: a real subprocess, real HTTP over loopback, no mocks.

Each test resets the emulator (ledger, callbacks, rules, limiter) and restores the baseline
configuration, so tests do not depend on each other's order.
"""

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from faceswap_jobs.sandbox import free_port, wait_until

pytestmark = pytest.mark.timeout(60)

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "emulator-token"
SECOND_TOKEN = "second-secret-token"
EXPIRED_TOKEN = "expired-secret-token"
USED_UP_TOKEN = "used-up-secret-token"
DISABLED_TOKEN = "disabled-secret-token"
ALL_TOKENS = (TOKEN, SECOND_TOKEN, EXPIRED_TOKEN, USED_UP_TOKEN, DISABLED_TOKEN)
BASELINE_CONFIG = {
    "fault_500": 0.0,
    "fault_429": 0.0,
    "fault_hang": 0.0,
    "fault_reset": 0.0,
    "fault_malformed": 0.0,
    "retry_after_s": 1.0,
    "rate_per_s": None,
    "burst": None,
    "latency_min_s": 1.0,
    "latency_max_s": 2.0,
    "time_scale": 0.001,
    "callback_delay_s": 0.0,
    "callback_jitter_s": 0.0,
    "callback_loss": 0.0,
    "callback_duplicate": 0.0,
}
STARTUP_TIMEOUT_S = 20.0
WAIT_TIMEOUT_S = 10.0


@dataclass
class Emulator:
    """A running emulator process."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def sample(self, name: str = "astronaut.png") -> str:
        return self.url(f"/samples/{name}")

    def swap(
        self,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = TOKEN,
        data: bytes | None = None,
        timeout_s: float = 10.0,
    ) -> requests.Response:
        headers = {"accept": "application/json", "content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        payload = data if data is not None else json.dumps(body).encode()
        return requests.post(
            self.url("/face/swap"), data=payload, headers=headers, timeout=timeout_s
        )

    def default_body(self, **extra: Any) -> dict[str, Any]:
        return {
            "source_image_url": self.sample("astronaut.png"),
            "target_image_url": self.sample("chelsea.png"),
            **extra,
        }

    def configure(self, **changes: Any) -> dict[str, Any]:
        response = requests.put(self.url("/_emulator/config"), json=changes, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def ledger(self, **params: Any) -> list[dict[str, Any]]:
        response = requests.get(self.url("/_emulator/ledger"), params=params, timeout=5)
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == len(body["calls"])
        return body["calls"]

    def deliveries(self, *task_ids: str) -> list[dict[str, Any]]:
        """Deliveries of these tasks only: a previous test's delivery may be recorded late."""
        body = requests.get(self.url("/_emulator/callbacks"), timeout=5).json()
        assert body["count"] == len(body["deliveries"])
        return [d for d in body["deliveries"] if d["task_id"] in task_ids]


def _start_emulator(log_path: Path, *extra_args: str) -> Emulator:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "faceswap_jobs.emulator",
        "--port",
        str(port),
        "--time-scale",
        "0.001",
        "--latency-min-s",
        "1",
        "--latency-max-s",
        "2",
        *extra_args,
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=_env()
        )
    emulator = Emulator(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"emulator exited: {log_path.read_text()}")
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(emulator.url("/_emulator/healthz"), timeout=1).json() == {"ok": True}:
                return emulator
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError("emulator did not become healthy")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _stop(emulator: Emulator) -> str:
    emulator.process.terminate()
    try:
        emulator.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        emulator.process.kill()
        emulator.process.wait()
    return emulator.log_path.read_text()


@pytest.fixture(scope="module")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = _start_emulator(
        tmp_path_factory.mktemp("emulator") / "emulator.log",
        "--tokens",
        f"{TOKEN},{SECOND_TOKEN}",
        "--expired-tokens",
        EXPIRED_TOKEN,
        "--used-up-tokens",
        USED_UP_TOKEN,
        "--disabled-tokens",
        DISABLED_TOKEN,
        "--hang-s",
        "5",
        "--image-size",
        "512",
        "--seed",
        "7",
    )
    yield emulator
    log = _stop(emulator)
    assert "Traceback" not in log, log


@pytest.fixture
def emulator(emulator_process: Emulator) -> Emulator:
    assert requests.post(emulator_process.url("/_emulator/reset"), timeout=5).json() == {"ok": True}
    emulator_process.configure(**BASELINE_CONFIG)
    return emulator_process


class _CallbackReceiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CallbackHandler)
        self.received: list[dict[str, Any]] = []
        self.condition = threading.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def wait_for(self, count: int) -> list[dict[str, Any]]:
        with self.condition:
            self.condition.wait_for(lambda: len(self.received) >= count, WAIT_TIMEOUT_S)
            return list(self.received)


class _CallbackHandler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    server: _CallbackReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with self.server.condition:
            self.server.received.append(json.loads(body))
            self.server.condition.notify_all()
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[_CallbackReceiver]:
    server = _CallbackReceiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def receiver(receiver_server: _CallbackReceiver) -> _CallbackReceiver:
    with receiver_server.condition:
        receiver_server.received.clear()
    return receiver_server


def _wait_until(predicate: Any) -> None:
    wait_until(predicate, WAIT_TIMEOUT_S, "the emulator's deliveries", None)


def assert_envelope(
    response: requests.Response, status: int, code: str, message: str | None = None
) -> dict[str, Any]:
    """The vendor's error envelope, exactly."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "error", "trace_id"}
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if message is not None:
        assert message in body["error"]["message"]
    assert uuid.UUID(body["trace_id"]).version == 4
    return body


# --- success -------------------------------------------------------------------------------


def test_success_body_matches_the_documentation_and_the_png(emulator: Emulator) -> None:
    response = emulator.swap(emulator.default_body())

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"image_url", "image_width", "image_height", "image_size", "task_id"}
    assert uuid.UUID(body["task_id"]).version == 4
    assert body["image_url"] == emulator.url(f"/files/{body['task_id']}.png")
    image_response = requests.get(body["image_url"], timeout=5)
    assert image_response.status_code == 200
    assert image_response.headers["content-type"] == "image/png"
    assert len(image_response.content) == body["image_size"]
    image = Image.open(io.BytesIO(image_response.content))
    assert image.format == "PNG"
    assert image.size == (body["image_width"], body["image_height"])
    assert max(image.size) == 512
    [entry] = emulator.ledger()
    assert entry["outcome"] == "success"
    assert entry["status"] == 200
    assert entry["task_id"] == body["task_id"]
    assert entry["request"] == emulator.default_body()
    assert entry["seq"] == 1
    assert entry["duration_s"] >= 0


def test_composite_differs_from_target(emulator: Emulator) -> None:
    body = emulator.swap(emulator.default_body()).json()
    result = Image.open(io.BytesIO(requests.get(body["image_url"], timeout=5).content))
    target = Image.open(io.BytesIO(requests.get(emulator.sample("chelsea.png"), timeout=5).content))
    target = target.convert("RGB").resize(result.size)
    corner = (5, 5)
    centre = (result.width // 2, result.height // 2)

    assert result.convert("RGB").getpixel(corner) == pytest.approx(target.getpixel(corner), abs=12)
    assert result.convert("RGB").getpixel(centre) != target.getpixel(centre)


def test_bearer_scheme_is_case_insensitive_and_unknown_fields_are_recorded(
    emulator: Emulator,
) -> None:
    response = requests.post(
        emulator.url("/face/swap"),
        json=emulator.default_body(**{"async": False, "timeout": 120}),
        headers={"authorization": f"bEaReR {SECOND_TOKEN}"},
        timeout=10,
    )

    assert response.status_code == 200, response.text
    [entry] = emulator.ledger()
    assert entry["request"]["async"] is False
    assert entry["token_hash"] == hashlib.sha256(SECOND_TOKEN.encode()).hexdigest()[:16]


# --- auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "status", "code"),
    [
        (None, 401, "no_token"),
        ("", 401, "no_token"),
        ("Bearer ", 401, "no_token"),
        ("Bearer not-a-token", 401, "invalid_token"),
        (f"Basic {TOKEN}", 401, "invalid_token"),
        (f"Bearer {EXPIRED_TOKEN}", 401, "token_expired"),
        (f"Bearer {USED_UP_TOKEN}", 403, "used_up"),
        (f"Bearer {DISABLED_TOKEN}", 403, "disabled"),
    ],
)
def test_auth_failures_use_vendor_codes(
    emulator: Emulator, authorization: str | None, status: int, code: str
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}

    response = requests.post(
        emulator.url("/face/swap"), json=emulator.default_body(), headers=headers, timeout=5
    )

    body = assert_envelope(response, status, code)
    [entry] = emulator.ledger()
    assert entry["outcome"] == code
    assert entry["status"] == status
    assert entry["trace_id"] == body["trace_id"]


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"{not json", "JSON object"),
        (b"[1, 2]", "JSON object"),
        (b"", "JSON object"),
        (json.dumps({"target_image_url": "http://x/a.png"}).encode(), "source_image_url"),
        (json.dumps({"source_image_url": "http://x/a.png"}).encode(), "target_image_url"),
        (
            json.dumps(
                {"source_image_url": "ftp://x/a", "target_image_url": "http://x/b"}
            ).encode(),
            "source_image_url",
        ),
        (
            json.dumps({"source_image_url": "http://x/a", "target_image_url": 5}).encode(),
            "target_image_url",
        ),
        (
            json.dumps(
                {"source_image_url": "http://x/" + "a" * 2048, "target_image_url": "http://x/b"}
            ).encode(),
            "source_image_url",
        ),
        (
            json.dumps(
                {"source_image_url": "http://x/a", "target_image_url": "http://x/b", "timeout": 0}
            ).encode(),
            "timeout",
        ),
        (
            json.dumps(
                {"source_image_url": "http://x/a", "target_image_url": "http://x/b", "timeout": "9"}
            ).encode(),
            "timeout",
        ),
        (
            json.dumps(
                {
                    "source_image_url": "http://x/a",
                    "target_image_url": "http://x/b",
                    "callback_url": "javascript:alert(1)",
                }
            ).encode(),
            "callback_url",
        ),
    ],
)
def test_bad_bodies_are_400_naming_the_field(emulator: Emulator, data: bytes, field: str) -> None:
    response = emulator.swap(data=data)

    assert_envelope(response, 400, "bad_request", field)
    [entry] = emulator.ledger()
    assert entry["outcome"] == "bad_request"


def test_non_json_body_is_kept_raw_in_the_ledger(emulator: Emulator) -> None:
    emulator.swap(data=b"source=a&target=b")

    [entry] = emulator.ledger()
    assert entry["request"] == {"raw": "source=a&target=b"}


def test_body_over_64_kib_is_413(emulator: Emulator) -> None:
    body = emulator.default_body(padding="x" * (70 * 1024))

    response = emulator.swap(body)

    assert_envelope(response, 413, "bad_request")
    [entry] = emulator.ledger()
    assert entry["outcome"] == "too_large"
    assert entry["request"] == {"raw": json.dumps(body)[:500]}


# --- processing failures -------------------------------------------------------------------


@pytest.mark.parametrize("unreachable", ["refused", "404"])
def test_unfetchable_image_is_500_fetch_failed(emulator: Emulator, unreachable: str) -> None:
    source_url = (
        f"http://127.0.0.1:{free_port()}/refused.png"
        if unreachable == "refused"
        else emulator.sample("no-such-sample.png")
    )

    response = emulator.swap(emulator.default_body(source_image_url=source_url))

    assert_envelope(response, 500, "api_error", "fetch failed")
    assert [entry["outcome"] for entry in emulator.ledger()] == ["fetch_failed"]


def test_undecodable_image_is_400(emulator: Emulator) -> None:
    body = emulator.default_body(target_image_url=emulator.url("/_emulator/healthz"))

    response = emulator.swap(body)

    assert_envelope(response, 400, "bad_request", "image could not be decoded")
    assert [entry["outcome"] for entry in emulator.ledger()] == ["undecodable"]


def test_timeout_shorter_than_latency_is_500_processing_timed_out(emulator: Emulator) -> None:
    emulator.configure(latency_min_s=100.0, latency_max_s=100.0)

    response = emulator.swap(emulator.default_body(timeout=1))

    assert_envelope(response, 500, "api_error", "processing timed out")
    assert [entry["outcome"] for entry in emulator.ledger()] == ["processing_timeout"]


# --- rate limit and faults -----------------------------------------------------------------


def test_rate_limit_answers_429_with_integer_retry_after(emulator: Emulator) -> None:
    emulator.configure(rate_per_s=0.2, burst=2)

    statuses = [emulator.swap(emulator.default_body()).status_code for _ in range(2)]
    limited = emulator.swap(emulator.default_body())
    other_token = emulator.swap(emulator.default_body(), token=SECOND_TOKEN)

    assert statuses == [200, 200]
    assert_envelope(limited, 429, "too_many_requests")
    retry_after = limited.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 5
    assert other_token.status_code == 200
    outcomes = [entry["outcome"] for entry in emulator.ledger()]
    assert outcomes == ["success", "success", "rate_limited", "success"]


@pytest.mark.parametrize(
    ("fault", "status", "code", "message"),
    [
        ("fault_500", 500, "api_error", "internal error"),
        ("fault_429", 429, "too_many_requests", None),
    ],
)
def test_status_faults_at_rate_one(
    emulator: Emulator, fault: str, status: int, code: str, message: str | None
) -> None:
    emulator.configure(**{fault: 1.0})

    responses = [emulator.swap(emulator.default_body()) for _ in range(3)]

    for response in responses:
        assert_envelope(response, status, code, message)
    if status == 429:
        assert {response.headers["Retry-After"] for response in responses} == {"1"}
    assert [entry["outcome"] for entry in emulator.ledger()] == [fault] * 3


def test_injected_429_retry_after_is_scaled_and_rounded_up(emulator: Emulator) -> None:
    emulator.configure(fault_429=1.0, retry_after_s=2500.0)

    response = emulator.swap(emulator.default_body())

    assert_envelope(response, 429, "too_many_requests")
    assert response.headers["Retry-After"] == "3"


def test_hang_fault_outlasts_the_client_timeout(emulator: Emulator) -> None:
    emulator.configure(fault_hang=1.0)

    with pytest.raises(requests.ReadTimeout):
        emulator.swap(emulator.default_body(), timeout_s=0.5)

    [entry] = emulator.ledger()
    assert entry["outcome"] == "hang"
    assert entry["status"] is None
    assert requests.get(emulator.url("/_emulator/healthz"), timeout=5).json() == {"ok": True}


def test_reset_fault_breaks_the_connection(emulator: Emulator) -> None:
    emulator.configure(fault_reset=1.0)

    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        emulator.swap(emulator.default_body())

    [entry] = emulator.ledger()
    assert entry["outcome"] == "reset"
    assert entry["status"] is None
    assert requests.get(emulator.url("/_emulator/healthz"), timeout=5).json() == {"ok": True}


def test_malformed_fault_alternates_html_and_json_without_image_url(emulator: Emulator) -> None:
    emulator.configure(fault_malformed=1.0)

    first = emulator.swap(emulator.default_body())
    second = emulator.swap(emulator.default_body())

    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/html")
    assert first.text.lstrip().startswith("<!DOCTYPE html>")
    assert second.status_code == 200
    assert "image_url" not in second.json()
    assert [entry["outcome"] for entry in emulator.ledger()] == ["malformed", "malformed"]


def test_scripted_rule_fires_its_times_then_stops(emulator: Emulator) -> None:
    rule = {
        "source_contains": "astronaut-gray",
        "status": 400,
        "code": "bad_request",
        "message": "face not found",
        "times": 2,
    }
    emulator.configure(rules=[rule])
    chosen = emulator.default_body(source_image_url=emulator.sample("astronaut-gray.png"))

    results = [emulator.swap(chosen) for _ in range(3)]
    other = emulator.swap(emulator.default_body())

    assert_envelope(results[0], 400, "bad_request", "face not found")
    assert_envelope(results[1], 400, "bad_request", "face not found")
    assert results[2].status_code == 200
    assert other.status_code == 200
    outcomes = [entry["outcome"] for entry in emulator.ledger()]
    assert outcomes == ["rule", "rule", "success", "success"]
    config = requests.get(emulator.url("/_emulator/config"), timeout=5).json()
    assert config["rules"][0]["times"] == 0


def test_scripted_429_rule_sends_retry_after(emulator: Emulator) -> None:
    emulator.configure(
        rules=[{"source_contains": "", "status": 429, "code": "too_many_requests", "times": 1}]
    )

    response = emulator.swap(emulator.default_body())

    assert_envelope(response, 429, "too_many_requests")
    assert response.headers["Retry-After"] == "1"


def test_scripted_reset_rule(emulator: Emulator) -> None:
    emulator.configure(rules=[{"source_contains": "astronaut", "kind": "reset", "times": 1}])

    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        emulator.swap(emulator.default_body())

    assert emulator.swap(emulator.default_body()).status_code == 200
    assert [entry["outcome"] for entry in emulator.ledger()] == ["rule", "success"]


# --- ledger, config, reset -----------------------------------------------------------------


def test_ledger_filters_by_seq_and_outcome(emulator: Emulator) -> None:
    emulator.swap(emulator.default_body())
    emulator.swap(emulator.default_body(), token=None)
    emulator.swap(emulator.default_body())

    assert [entry["seq"] for entry in emulator.ledger()] == [1, 2, 3]
    assert [entry["seq"] for entry in emulator.ledger(since=1)] == [2, 3]
    assert [entry["seq"] for entry in emulator.ledger(outcome="success")] == [1, 3]
    assert emulator.ledger(outcome="no_token")[0]["token_hash"] is None
    bad_since = requests.get(emulator.url("/_emulator/ledger?since=x"), timeout=5)
    assert_envelope(bad_since, 400, "bad_request", "since")


def test_tokens_never_appear_in_ledger_or_config(emulator: Emulator) -> None:
    for token in ALL_TOKENS:
        emulator.swap(emulator.default_body(), token=token)

    exposed = (
        requests.get(emulator.url("/_emulator/ledger"), timeout=5).text
        + requests.get(emulator.url("/_emulator/config"), timeout=5).text
        + requests.get(emulator.url("/_emulator/callbacks"), timeout=5).text
    )

    for token in ALL_TOKENS:
        assert token not in exposed
    hashes = {entry["token_hash"] for entry in emulator.ledger()}
    assert hashes == {hashlib.sha256(token.encode()).hexdigest()[:16] for token in ALL_TOKENS}


def test_config_update_is_validated_and_all_or_nothing(emulator: Emulator) -> None:
    url = emulator.url("/_emulator/config")
    before = requests.get(url, timeout=5).json()

    bad_updates = [
        ({"fault_500": 1.5}, "fault_500"),
        ({"fault_500": 1.0, "latency_min_s": 9.0, "latency_max_s": 1.0}, "latency_min_s"),
        ({"rate_per_s": -1}, "rate_per_s"),
        ({"time_scale": "fast"}, "time_scale"),
        ({"tokens": ["x"]}, "tokens"),
        ({"rules": [{"source_contains": "a", "kind": "explode"}]}, "kind"),
        ({"rules": "nope"}, "rules"),
    ]
    for update, field in bad_updates:
        assert_envelope(requests.put(url, json=update, timeout=5), 400, "bad_request", field)
    assert requests.get(url, timeout=5).json() == before

    after = emulator.configure(fault_500=0.25, rate_per_s=3)
    assert after["fault_500"] == 0.25
    assert after["rate_per_s"] == 3
    assert after["effective_burst"] == 3


def test_reset_clears_ledger_rules_and_callbacks_but_keeps_config(emulator: Emulator) -> None:
    emulator.configure(latency_max_s=3.0, rules=[{"source_contains": "zzz"}])
    emulator.swap(emulator.default_body())

    assert requests.post(emulator.url("/_emulator/reset"), timeout=5).json() == {"ok": True}

    assert emulator.ledger() == []
    config = requests.get(emulator.url("/_emulator/config"), timeout=5).json()
    assert config["rules"] == []
    assert config["latency_max_s"] == 3.0


# --- files and samples ---------------------------------------------------------------------


def test_samples_are_listed_and_served(emulator: Emulator) -> None:
    names = requests.get(emulator.url("/samples"), timeout=5).json()["samples"]

    assert {"astronaut.png", "astronaut-mirror.png", "astronaut-warm.png"} <= set(names)
    for name in names:
        response = requests.get(emulator.sample(name), timeout=5)
        assert response.headers["content-type"] == "image/png"
        assert max(Image.open(io.BytesIO(response.content)).size) <= 256


@pytest.mark.parametrize(
    "path",
    [
        "/files/../config.py",
        "/files/..%2F..%2Fetc%2Fpasswd",
        f"/files/{uuid.uuid4()}.png",
        "/samples/..%2Fconfig.py",
        "/samples/generate.py",
        "/nowhere",
    ],
)
def test_unknown_files_are_404_envelopes(emulator: Emulator, path: str) -> None:
    assert_envelope(requests.get(emulator.url(path), timeout=5), 404, "not_found")


# --- callbacks -----------------------------------------------------------------------------


def test_callback_mode_acknowledges_then_posts_the_result(
    emulator: Emulator, receiver: _CallbackReceiver
) -> None:
    response = emulator.swap(emulator.default_body(callback_url=receiver.url))

    assert response.status_code == 200
    ack = response.json()
    assert set(ack) == {"task_id"}
    [payload] = receiver.wait_for(1)
    assert set(payload) == {
        "success",
        "task_id",
        "image_url",
        "image_width",
        "image_height",
        "image_size",
    }
    assert payload["success"] is True
    assert payload["task_id"] == ack["task_id"]
    image = requests.get(payload["image_url"], timeout=5)
    assert len(image.content) == payload["image_size"]
    [entry] = emulator.ledger()
    assert (entry["outcome"], entry["status"], entry["task_id"]) == (
        "accepted",
        200,
        ack["task_id"],
    )
    _wait_until(lambda: len(emulator.deliveries(ack["task_id"])) == 1)
    [delivery] = emulator.deliveries(ack["task_id"])
    assert delivery["task_id"] == ack["task_id"]
    assert delivery["url"] == receiver.url
    assert (delivery["status"], delivery["lost"], delivery["duplicate"]) == (200, False, False)


def test_callback_reports_failures_with_the_envelope(
    emulator: Emulator, receiver: _CallbackReceiver
) -> None:
    body = emulator.default_body(
        source_image_url=f"http://127.0.0.1:{free_port()}/gone.png", callback_url=receiver.url
    )

    ack = emulator.swap(body).json()

    [payload] = receiver.wait_for(1)
    assert payload["success"] is False
    assert payload["task_id"] == ack["task_id"]
    assert payload["error"] == {"code": "api_error", "message": "fetch failed"}
    assert uuid.UUID(payload["trace_id"]).version == 4


def test_callback_duplicate_and_loss(emulator: Emulator, receiver: _CallbackReceiver) -> None:
    emulator.configure(callback_duplicate=1.0)
    duplicated = emulator.swap(emulator.default_body(callback_url=receiver.url)).json()
    payloads = receiver.wait_for(2)
    emulator.configure(callback_duplicate=0.0, callback_loss=1.0)
    lost = emulator.swap(emulator.default_body(callback_url=receiver.url)).json()
    mine = (duplicated["task_id"], lost["task_id"])
    _wait_until(lambda: len(emulator.deliveries(*mine)) == 3)

    assert [p["task_id"] for p in payloads] == [duplicated["task_id"]] * 2
    deliveries = emulator.deliveries(*mine)
    assert [(d["task_id"], d["duplicate"], d["lost"]) for d in deliveries] == [
        (duplicated["task_id"], False, False),
        (duplicated["task_id"], True, False),
        (lost["task_id"], False, True),
    ]
    assert deliveries[2]["status"] is None
    assert len(receiver.wait_for(2)) == 2


def test_callback_jitter_reorders_deliveries(
    emulator: Emulator, receiver: _CallbackReceiver
) -> None:
    emulator.configure(callback_jitter_s=400.0)
    acks = []
    for _ in range(12):
        acks.append(emulator.swap(emulator.default_body(callback_url=receiver.url)).json())
        time.sleep(0.01)

    sent = [ack["task_id"] for ack in acks]
    _wait_until(lambda: set(sent) <= {p["task_id"] for p in receiver.wait_for(0)})

    arrived = [p["task_id"] for p in receiver.wait_for(0) if p["task_id"] in sent]
    assert sorted(arrived) == sorted(sent)
    assert arrived != sent


# --- hostile input -------------------------------------------------------------------------


HOSTILE_BODIES = [
    b"[" * 30_000 + b"]" * 30_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    b"\xff\xfe\x00\x01garbage\x80\x81",
    b'{"source_image_url": "http://\\ud800/a.png", "target_image_url": "http://x/\\udfff"}',
    b'{"source_image_url": "http://x/a", "target_image_url": "http://x/b", "timeout": NaN}',
    b'{"source_image_url": "http://x/a", "target_image_url": "http://x/b", "timeout": 1e999}',
    b'{"source_image_url": "http://x/a", "target_image_url": "http://x/b", "timeout": '
    + b"9" * 5000
    + b"}",
    json.dumps({"source_image_url": "http://[::1/a", "target_image_url": "http://x/b"}).encode(),
    json.dumps({"source_image_url": "h" * 60_000, "target_image_url": "http://x/b"}).encode(),
    json.dumps({"source_image_url": None, "target_image_url": []}).encode(),
    b"\x00" * 1000,
]


def test_hostile_bodies_get_envelopes_and_the_server_stays_up(emulator: Emulator) -> None:
    for data in HOSTILE_BODIES:
        response = emulator.swap(data=data)
        assert response.status_code in (400, 413, 500), (data[:60], response.text)
        body = assert_envelope(response, response.status_code, response.json()["error"]["code"])
        if response.status_code == 500:
            assert body["error"] == {"code": "api_error", "message": "fetch failed"}

    entries = emulator.ledger()
    assert len(entries) == len(HOSTILE_BODIES)
    assert all(entry["outcome"] in ("bad_request", "fetch_failed") for entry in entries)
    assert requests.get(emulator.url("/_emulator/healthz"), timeout=5).json() == {"ok": True}


def test_hostile_config_updates_are_refused(emulator: Emulator) -> None:
    url = emulator.url("/_emulator/config")
    for data in (b"[" * 30_000, b"\xff\xfe", b'{"\\ud800": 1}', b'{"burst": 1e999}', b"null"):
        response = requests.put(url, data=data, timeout=5)
        assert_envelope(response, 400, "bad_request")
    response = requests.put(url, json={"rate_per_s": int("9" * 400)}, timeout=5)
    assert_envelope(response, 400, "bad_request", "rate_per_s")


# --- command line --------------------------------------------------------------------------


def test_cli_public_url_storage_dir_and_rate_limit(tmp_path: Path) -> None:
    storage_dir = tmp_path / "results"
    emulator = _start_emulator(
        tmp_path / "emulator.log",
        "--public-url",
        "http://cdn.example/face/",
        "--storage-dir",
        str(storage_dir),
        "--rate-per-s",
        "0.4",
    )
    try:
        first = emulator.swap(emulator.default_body())
        second = emulator.swap(emulator.default_body())
        config = requests.get(emulator.url("/_emulator/config"), timeout=5).json()
    finally:
        log = _stop(emulator)

    assert first.status_code == 200, first.text
    task_id = first.json()["task_id"]
    assert first.json()["image_url"] == f"http://cdn.example/face/files/{task_id}.png"
    assert (storage_dir / f"{task_id}.png").stat().st_size == first.json()["image_size"]
    assert_envelope(second, 429, "too_many_requests")
    assert second.headers["Retry-After"] in ("2", "3")  # ceil((1 - refill) / 0.4)
    assert (config["rate_per_s"], config["effective_burst"]) == (0.4, 1.0)
    assert config["storage_dir"] == str(storage_dir)
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--fault-500", "2"], "fault_500"),
        (["--latency-min-s", "5", "--latency-max-s", "1"], "latency_min_s"),
        (["--port", "http"], "--port"),
        (["--callback-loss", "nan"], "callback_loss"),
    ],
)
def test_bad_options_exit_with_a_one_line_error(args: list[str], mentions: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "faceswap_jobs.emulator", *args],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and mentions in errors[0]
    assert "Traceback" not in result.stderr
