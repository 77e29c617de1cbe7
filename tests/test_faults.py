"""Issue 8's fault suite, short enough for CI: each scenario of tests/faults (the real sender and
Slack client against the fake Slack over HTTP, on SQLite and PostgreSQL) loses nothing, doubles
nothing and delivers every urgent alert. Each prints its table row (`pytest -s`); the bench
(bench/bench_faults.py) runs the same scenarios longer, with the figures for docs/reliability.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.outcome import header
from tests.faults.scenarios import CI, SCENARIOS


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_nothing_is_lost_or_doubled_and_every_urgent_alert_is_delivered(
        name: str, db_url: str, tmp_path: Path) -> None:
    row = await SCENARIOS[name](db_url, CI, tmp_path)

    print(f"\n{header()}\n{row.line()}")
    assert row.faults > 0, "no fault was injected"
    assert row.queued >= CI.messages and row.delivered == row.queued
    assert (row.doubled, row.lost) == (0, 0)
    assert row.urgent_delivered == row.urgent_queued > 0
