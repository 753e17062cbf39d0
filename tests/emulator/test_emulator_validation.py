"""What the emulator refuses: malformed and oversized bodies each get the vendor's envelope,
and hostile bodies and config updates do not bring the server down.

Each test resets the emulator (ledger, callbacks, rules, limiter) and restores the baseline
configuration, so tests do not depend on each other's order.
"""

import json

import pytest
import requests

from tests.support.emulator_blackbox import (
    Emulator,
    assert_envelope,
)

pytestmark = pytest.mark.timeout(60)


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
