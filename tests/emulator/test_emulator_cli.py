"""The emulator's command line: options reach the running server, and a bad option is
refused in one line. Each test starts (or fails to start) an emulator of its own."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.emulator_blackbox import REPO_ROOT, assert_envelope, token_hash
from tests.support.emulator_blackbox import emulator_env as _env
from tests.support.emulator_blackbox import start_emulator as _start_emulator
from tests.support.emulator_blackbox import stop_emulator as _stop

pytestmark = pytest.mark.timeout(60)


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


def test_cli_sliding_rate_window_ignores_burst(tmp_path: Path) -> None:
    emulator = _start_emulator(
        tmp_path / "emulator.log",
        *["--rate-per-s", "2.5", "--burst", "50", "--rate-window", "sliding"],
    )
    try:
        config = requests.get(emulator.url("/_emulator/config"), timeout=5).json()
        with ThreadPoolExecutor(max_workers=4) as pool:
            statuses = sorted(
                pool.map(lambda _: emulator.swap(emulator.default_body()).status_code, range(4))
            )
    finally:
        log = _stop(emulator)

    assert (config["rate_window"], config["rate_per_s"], config["burst"]) == ("sliding", 2.5, 50)
    assert statuses == [200, 200, 429, 429]  # floor(2.5) calls in the window, burst unused
    assert "Traceback" not in log


def test_cli_token_rates_give_named_tokens_their_own_rate(tmp_path: Path) -> None:
    padded = "pool-token-b64=="
    emulator = _start_emulator(
        tmp_path / "emulator.log",
        *["--tokens", f"slow-token,{padded},free-token", "--rate-per-s", "0.01"],
        *["--token-rate", f"{padded}=20", "--token-rate", "free-token=none"],
    )
    try:
        config = requests.get(emulator.url("/_emulator/config"), timeout=5).json()
        statuses = {
            token: [emulator.swap(emulator.default_body(), token=token).status_code
                    for _ in range(3)]
            for token in ("slow-token", padded, "free-token")
        }  # fmt: skip
    finally:
        log = _stop(emulator)

    rates = {token_hash(padded): 20.0, token_hash("free-token"): None}
    assert config["token_rate_by_hash"] == rates
    assert statuses == {"slow-token": [200, 429, 429], padded: [200] * 3, "free-token": [200] * 3}
    assert padded not in str(config) and "Traceback" not in log


@pytest.mark.parametrize(
    "args",
    [
        ["--token-rate", "cli-secret-token"],
        ["--token-rate", "cli-secret-token=fast"],
        ["--token-rate", "cli-secret-token=0"],
        ["--token-rate", "cli-secret-token=-1"],
        ["--token-rate", "cli-secret-token=inf"],
        ["--token-rate", "=5"],
        ["--token-rate", " cli-secret-token=5"],
        ["--token-rate", "cli-secret-token=5", "--token-rate", "cli-secret-token=6"],
    ],
)
def test_a_bad_token_rate_is_refused_without_naming_the_token(args: list[str]) -> None:
    error, stderr = _refused(args)

    assert "token-rate" in error or "token_rates" in error
    assert "cli-secret-token" not in stderr


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--fault-500", "2"], "fault_500"),
        (["--latency-min-s", "5", "--latency-max-s", "1"], "latency_min_s"),
        (["--port", "http"], "--port"),
        (["--callback-loss", "nan"], "callback_loss"),
        (["--rate-window", "fixed"], "--rate-window"),
    ],
)
def test_bad_options_exit_with_a_one_line_error(args: list[str], mentions: str) -> None:
    error, _ = _refused(args)

    assert mentions in error


def _refused(args: list[str]) -> tuple[str, str]:
    """Start the emulator with `args`, which it must refuse as a usage error: exit 2, no
    traceback and one `error:` line. That line, and all of stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "faceswap_jobs.emulator", *args],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(errors) == 1
    return errors[0], result.stderr
