"""Benchmark: the reminder sweep's cost against the table's size, on SQLite and PostgreSQL.

For each size N (cases, one reminder row each: 1% due, 49% pending for later, 50% already
sent) it reports medians of:
  - due query: the sweep's claim query (LIMIT 500) through ix_reminders_due, against the same
    query forced onto a full scan (SQLite `NOT INDEXED`; PostgreSQL with index scans off);
  - idle sweep: a whole sweep when nothing is due (what every replica pays every 30 s);
  - full sweep: claiming and enqueuing the 1% due, and the cost per due row.
Then the digest build (dry run, and one real run) for 1,000 DSLs in 1,000 schools.

    .venv/bin/python bench/bench_sweep.py                      # 10k and 100k, SQLite (+ PostgreSQL if set)
    .venv/bin/python bench/bench_sweep.py --big                # adds 1M
    CONSENTBOT_TEST_DATABASE_URL=postgresql+asyncpg://root@127.0.0.1:5432/test .venv/bin/python bench/bench_sweep.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from bot import reminders  # noqa: E402
from bot.cases import Services  # noqa: E402
from bot.crypto import Keyring, generate_key  # noqa: E402
from bot.digest import run_digests  # noqa: E402
from bot.policy.loader import load_policy  # noqa: E402
from storage import reminder_repo  # noqa: E402
from storage.db import Database, create_database  # noqa: E402
from storage.migrate import upgrade  # noqa: E402

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Europe/London"))  # a Tuesday in school hours
DUE_SQL = "SELECT id FROM reminders {hint} WHERE status = 'pending' AND due_at <= :now ORDER BY due_at LIMIT 500"


def stamp(when: datetime, sqlite: bool) -> Any:
    """A timestamp as the database stores it (SQLite: naive UTC text, as SQLAlchemy writes it)."""
    utc = when.astimezone(UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else utc


def rows_for(n: int, schools: int, sqlite: bool) -> tuple[list[tuple], list[tuple], list[tuple], list[tuple]]:
    created = stamp(NOW - timedelta(days=30), sqlite)
    school_rows = [(i + 1, f"s{i}", f"School {i}", "ENG", "Europe/London", created) for i in range(schools)]
    staff = [(i + 1, i + 1, f"dsl{i}@x.sch.uk", f"DSL {i}", "dsl", f"U{i:07d}", True, created) for i in range(schools)]
    cases, reminder_rows = [], []
    past, future = stamp(NOW - timedelta(hours=1), sqlite), stamp(NOW + timedelta(days=3), sqlite)
    history = stamp(NOW - timedelta(days=2), sqlite)
    for i in range(n):
        school = i % schools + 1
        cases.append((i + 1, f"C-{i:08d}", school, school, "england", "2026.1", created, "eh_outcome",
                      "awaiting_outcome", False, school, stamp(NOW - timedelta(hours=2), sqlite), 1, "", created))
        bucket = i % 100  # 1 due, 49 for later, 50 already sent
        status, due = ("pending", past) if bucket == 0 else ("pending", future) if bucket < 50 else ("sent", history)
        reminder_rows.append((i + 1, school, "outcome", 0, due, f"{i}:outcome:b:0", status, created))
    return school_rows, staff, cases, reminder_rows


COLUMNS = {
    "schools": ["id", "slug", "name", "nation", "timezone", "created_at"],
    "staff": ["id", "school_id", "email", "display_name", "role", "slack_user_id", "active", "created_at"],
    "cases": ["id", "ref", "school_id", "raised_by", "policy_id", "policy_version", "created_at", "step", "status",
              "urgent", "assignee_id", "due_at", "version", "head_hash", "updated_at"],
    "reminders": ["case_id", "recipient_id", "kind", "level", "due_at", "unique_key", "status", "created_at"],
}


async def load(db: Database, url: str, n: int, schools: int) -> None:
    """Bulk-load: COPY on PostgreSQL, one executemany per table on SQLite."""
    data = dict(zip(COLUMNS, rows_for(n, schools, db.is_sqlite), strict=True))
    if db.is_sqlite:
        async with db.engine.begin() as conn:
            raw = await conn.get_raw_connection()
            for table, rows in data.items():
                marks = ", ".join("?" * len(COLUMNS[table]))
                await raw.driver_connection.executemany(
                    f"INSERT INTO {table} ({', '.join(COLUMNS[table])}) VALUES ({marks})", rows)  # noqa: S608
            await conn.execute(text("ANALYZE"))
        return
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for table, rows in data.items():
            await conn.copy_records_to_table(table, records=rows, columns=COLUMNS[table])
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def median_of(runs: int, work: Callable[[], Awaitable[Any]]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def due_query(db: Database, *, indexed: bool) -> None:
    # PostgreSQL: a distinct text, so asyncpg's prepared-statement cache cannot hand back the indexed plan.
    hint = "" if indexed else "NOT INDEXED" if db.is_sqlite else "/* seq scan */"
    async with db.engine.begin() as conn:
        if not indexed and not db.is_sqlite:
            await conn.execute(text("SET LOCAL enable_indexscan = off"))
            await conn.execute(text("SET LOCAL enable_bitmapscan = off"))
        await conn.execute(text(DUE_SQL.format(hint=hint)), {"now": stamp(NOW, db.is_sqlite)})


async def reset(db: Database) -> None:
    """Put the swept rows back to due and drop their outbox rows, so the sweep can be timed again."""
    past = stamp(NOW - timedelta(hours=1), db.is_sqlite)
    async with db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM outbox"))
        await conn.execute(text("UPDATE reminders SET status = 'pending', sent_at = NULL, claimed_until = NULL "
                                "WHERE due_at = :past"), {"past": past})


async def bench_size(svc: Services, url: str, n: int) -> dict[str, float]:
    db = svc.db
    start = time.perf_counter()
    await load(db, url, n, schools=max(1, n // 1000))
    loaded = time.perf_counter() - start
    indexed = await median_of(7, lambda: due_query(db, indexed=True))
    scan = await median_of(5, lambda: due_query(db, indexed=False))
    sweeps = []
    for _ in range(3):
        start = time.perf_counter()
        report = await reminders.sweep(svc, now=NOW)
        sweeps.append(time.perf_counter() - start)
        assert report.sent == n // 100, report
        await reset(db)
    await reminders.sweep(svc, now=NOW)
    idle = await median_of(7, lambda: reminders.sweep(svc, now=NOW))
    async with db.transaction() as s:
        plan = await reminder_repo.due_query_plan(s, now=NOW)
    return {"n": n, "load": loaded, "indexed": indexed, "scan": scan, "idle": idle,
            "sweep": statistics.median(sweeps), "plan": " / ".join(plan)[:110]}  # type: ignore[dict-item]


async def bench_digest(svc: Services, url: str) -> tuple[float, float]:
    await load(svc.db, url, 5000, schools=1000)  # 1,000 DSLs, 5 open cases each
    dry = await median_of(3, lambda: run_digests(svc, now=NOW, dry_run=True))
    start = time.perf_counter()
    report = await run_digests(svc, now=NOW)
    assert len(report.messages) == 2000, len(report.messages)  # daily + weekly for each DSL
    return dry, time.perf_counter() - start


async def fresh(backend: str, pg: str | None, workdir: Path) -> tuple[str, Callable[[], Awaitable[None]]]:
    if backend == "sqlite":
        path = workdir / f"{uuid.uuid4().hex}.db"
        return f"sqlite+aiosqlite:///{path}", _noop
    import asyncpg

    assert pg is not None
    name = f"consentbot_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg.replace("postgresql+asyncpg://", "postgresql://"))
    await admin.execute(f'CREATE DATABASE "{name}"')

    async def drop() -> None:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    return pg.rsplit("/", 1)[0] + "/" + name, drop


async def _noop() -> None:
    return None


async def with_services(url: str, work: Callable[[Services], Awaitable[Any]]) -> Any:
    db = create_database(url)
    await upgrade(db)
    try:
        return await work(Services(db=db, keyring=Keyring.parse(generate_key("b1")), policy=load_policy(),
                                   clock=lambda: NOW))
    finally:
        await db.dispose()


async def run_backend(backend: str, pg: str | None, sizes: list[int], workdir: Path) -> None:
    print(f"\n== {backend} ==")
    print(f"{'cases':>9} {'load s':>7} {'due idx ms':>10} {'due scan ms':>11} {'scan/idx':>8} "
          f"{'idle sweep ms':>13} {'sweep 1% s':>10} {'us/due row':>10}")
    results = []
    for n in sizes:
        url, drop = await fresh(backend, pg, workdir)
        try:
            r = await with_services(url, lambda svc, n=n, url=url: bench_size(svc, url, n))
        finally:
            await drop()
        results.append(r)
        print(f"{n:>9,} {r['load']:>7.1f} {r['indexed'] * 1e3:>10.2f} {r['scan'] * 1e3:>11.2f} "
              f"{r['scan'] / r['indexed']:>8.1f} {r['idle'] * 1e3:>13.2f} {r['sweep']:>10.2f} "
              f"{r['sweep'] / (n // 100) * 1e6:>10.0f}")
    first, last = results[0], results[-1]
    print(f"growth {first['n']:,} -> {last['n']:,} rows (x{last['n'] // first['n']}): due query "
          f"x{last['indexed'] / first['indexed']:.1f}, full scan x{last['scan'] / first['scan']:.1f}, "
          f"idle sweep x{last['idle'] / first['idle']:.1f}, per-due-row sweep cost "
          f"x{(last['sweep'] / last['n']) / (first['sweep'] / first['n']):.2f}")
    print(f"plan: {last['plan']}")
    url, drop = await fresh(backend, pg, workdir)
    try:
        dry, real = await with_services(url, lambda svc: bench_digest(svc, url))
    finally:
        await drop()
    print(f"digest for 1,000 DSLs: dry run median {dry:.2f} s, real run {real:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", action="store_true", help="add 1,000,000 cases (slow to load)")
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--pg", default=os.environ.get("CONSENTBOT_TEST_DATABASE_URL"))
    args = parser.parse_args()
    sizes = [10_000, 100_000] + ([1_000_000] if args.big else [])
    backends = ["sqlite"] + ([] if args.sqlite_only or not args.pg else ["postgresql"])
    with tempfile.TemporaryDirectory() as workdir:
        for backend in backends:
            asyncio.run(run_backend(backend, args.pg, sizes, Path(workdir)))


if __name__ == "__main__":
    main()
