"""Real services for the tests: a private redis-server, the emulator and Celery workers.

One redis-server and one emulator per test session; workers per module. Tests isolate themselves
by resetting the emulator's ledger and by using fresh job ids, never by sleeping.

Only the fixtures live here; what they stand on, and every helper a test imports, is in
`tests.support`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from faceswap_jobs.config import Settings

# Before the first import of `tests.support`, so that a failing assert in it is explained in full.
pytest.register_assert_rewrite("tests.support")

from tests.support.emulator import Emulator, running_emulator  # noqa: E402
from tests.support.redis import decoded_client, private_redis_url  # noqa: E402
from tests.support.stack import Stack, module_stack, producer_settings  # noqa: E402


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with private_redis_url() as url:
        yield url


@pytest.fixture(scope="session")
def emulator(logs_dir: Path) -> Iterator[Emulator]:
    with running_emulator(logs_dir) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def settings(redis_url: str, emulator: Emulator) -> Settings:
    """What producers in the tests use: no API token at all, as in an application."""
    return producer_settings(redis_url, emulator.base_url)


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest,
    redis_url: str,
    emulator: Emulator,
    settings: Settings,
    logs_dir: Path,
) -> Iterator[Stack]:
    """Workers for one test module, with a key prefix of its own (limiter state included)."""
    with module_stack(request.module.__name__, redis_url, emulator, settings, logs_dir) as stack:
        yield stack


@pytest.fixture
def fresh(emulator: Emulator) -> Emulator:
    """The emulator with an empty ledger and no faults."""
    emulator.reset()
    return emulator


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    with decoded_client(redis_url) as client:
        yield client
