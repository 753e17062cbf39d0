"""Every setting is documented where a newcomer looks: the README's table and `.env.example`."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceswap_jobs.config import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    variable = f"FACESWAP_{name.upper()}"
    table = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("|")]
    assert any(f"`{variable}`" in line for line in table), f"{variable} not in the README's table"
    assert variable in (ROOT / ".env.example").read_text(), f"{variable} not in .env.example"
