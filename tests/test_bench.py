"""The Slack bench times real answers only: its quick mode runs (SQLite, and PostgreSQL when
configured) with every answer counted as written, and a replayed round is refused as a shortfall.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import bench_slack
from tests.conftest import postgres_url
from tests.fakes.slack_api import FakeSlack


async def test_quick_mode_counts_a_written_event_per_answer(capsys: pytest.CaptureFixture[str]) -> None:
    summary = await bench_slack.main(requests=8, rounds=1, concurrency=4, postgres=postgres_url())

    assert set(summary) == ({"sqlite", "postgres"} if postgres_url() else {"sqlite"})
    for figures in summary.values():
        assert figures["real/bare"] > 0 and figures["floor/bare"] > 0 and figures["real/bare paired"] > 0
    out = capsys.readouterr().out
    assert "fsync probe:" in out and "every answer counted as written" in out


async def test_a_replayed_round_is_a_shortfall(migrated_sqlite_url: str, fake_slack: FakeSlack) -> None:
    product = await bench_slack.Product.start(fake_slack, migrated_sqlite_url)
    try:
        bodies = [product.answer_body(v, f"VREPLAY{i}") for i, v in enumerate(await product.raise_cases(3))]
        await bench_slack.counted("real", product.count, bench_slack.timed(product.app, bodies, 2), 3)

        with pytest.raises(bench_slack.ShortfallError, match="0 rows written for 3 requests"):
            await bench_slack.counted("real", product.count, bench_slack.timed(product.app, bodies, 2), 3)
    finally:
        await product.svc.db.dispose()


def test_the_floor_counts_its_own_writes(tmp_path: Path) -> None:
    import asyncio

    async def run() -> int:
        floor = bench_slack.SqliteFloor(tmp_path / "floor.db")
        await floor.prepare(2)
        await asyncio.gather(floor.answer("a"), floor.answer("b"))
        written = await floor.count()
        await floor.close()
        return written

    assert asyncio.run(run()) == 2
