""".env.example is rendered from `Settings`: a setting added, renamed or re-described in
faceswap_jobs/config.py without regenerating the file fails here, with the diff."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from faceswap_jobs.config import Settings
from faceswap_jobs.ops import env_example

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "python -m faceswap_jobs.ops.env_example > .env.example"


def test_env_example_is_rendered_from_settings() -> None:
    written = (ROOT / ".env.example").read_text()
    expected = env_example.render()
    diff = "".join(
        difflib.unified_diff(
            written.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            ".env.example",
            "rendered from Settings",
        )
    )
    assert not diff, f".env.example is out of date; regenerate it with `{REGENERATE}`:\n{diff}"


def test_every_setting_has_a_section() -> None:
    assert env_example.ungrouped() == [], "add them to a section in faceswap_jobs/ops/env_example"


def test_sections_name_only_settings() -> None:
    named = [name for _, names in env_example.GROUPS for name in names]
    assert len(named) == len(set(named)), "a setting in two sections"
    assert set(named) <= set(Settings.model_fields)


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_described_with_a_value(name: str) -> None:
    field = Settings.model_fields[name]
    assert field.description, f"{name}: give it a docstring in faceswap_jobs/config.py"
    assert env_example.shown_value(name, field)


def test_a_secret_shows_its_placeholder_not_its_default() -> None:
    rendered = env_example.render()
    assert "FACESWAP_API_TOKEN=replace-with-your-acedata-token" in rendered
    assert "emulator-token\n" not in rendered


def test_a_setting_without_a_value_to_show_is_refused() -> None:
    field = Settings.model_fields["callback_base_url"]
    bare = type(field)(annotation=field.annotation, default=None, description="x")
    with pytest.raises(ValueError, match="no default and no example"):
        env_example.shown_value("callback_base_url", bare)
