"""Every setting the bot reads is documented in .env.example, and nothing else is."""

from __future__ import annotations

import re
from pathlib import Path

from bot.config import Settings


def test_env_example_names_exactly_the_settings() -> None:
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (Path(__file__).parents[1] / ".env.example").read_text(), re.M))
    read = {f.alias for f in Settings.model_fields.values() if f.alias}
    assert documented == read, f"missing: {read - documented}, unknown: {documented - read}"
