"""The emulator tested as a black box: one process for this folder, reset before every test.

Its `emulator` fixture overrides the session emulator of `tests/conftest.py` here: these tests
reconfigure it freely, which the tests of our own code must never see.
"""

from collections.abc import Iterator

import pytest

from tests.support.emulator_blackbox import Emulator, module_emulator, reset_to_baseline


@pytest.fixture(scope="session")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with module_emulator(tmp_path_factory) as emulator:
        yield emulator


@pytest.fixture
def emulator(emulator_process: Emulator) -> Emulator:
    return reset_to_baseline(emulator_process)
