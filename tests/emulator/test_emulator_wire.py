"""The emulator's vendor API as a client sees it: a real subprocess, real HTTP, no mocks.

Success bodies and images, auth failures in the vendor's codes, processing failures, and
the files and samples it serves.

Each test resets the emulator (ledger, callbacks, rules, limiter) and restores the baseline
configuration, so tests do not depend on each other's order.
"""

import io
import uuid

import pytest
import requests
from PIL import Image

from faceswap_jobs.ops.sandbox import free_port
from tests.support.emulator_blackbox import (
    DISABLED_TOKEN,
    EXPIRED_TOKEN,
    SECOND_TOKEN,
    TOKEN,
    USED_UP_TOKEN,
    Emulator,
    assert_envelope,
    token_hash,
)

pytestmark = pytest.mark.timeout(60)


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
    assert entry["token_hash"] == token_hash(SECOND_TOKEN)


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
