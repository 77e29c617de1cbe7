"""Benchmark: the fault suite of issue 8, with figures. Each scenario of tests/faults runs the real
outbox sender and the real Slack client against the fake Slack over HTTP, on SQLite and (when
CONSENTBOT_TEST_DATABASE_URL is set) PostgreSQL, while it injects one kind of fault:

  a  Slack answers 500 to every post for a long outage (the issue: 5 minutes)
  b  posts stall past the client timeout and land later (the issue: 60 s), lost-post check on
  c  a 429 storm with Retry-After, against two senders
  d  the database goes away while messages are queued and drained (PostgreSQL: refused, then
     black-holed; SQLite: its write lock held by another process)
  e  a sender process SIGKILLed mid-burst, then `consentbot outbox drain` restarted

"delivered" and "doubled" are counted from the posts the fake Slack recorded, by the outbox dedupe key
each carries in its metadata; "lost" = queued - delivered, once everything was retried (failed routine
messages with `consentbot outbox retry --failed`). Exits 1 unless every scenario lost nothing,
doubled nothing, delivered every urgent message and injected its faults.

    .venv/bin/python bench/bench_faults.py                  # scaled timing (x1/30), ~2 minutes
    .venv/bin/python bench/bench_faults.py --long           # the real timing: 5-minute outage, 60-s stalls
    .venv/bin/python bench/bench_faults.py --only a,e --sqlite-only
    .venv/bin/python bench/bench_faults.py --no-check      # the lost-post check off: what it holds (exits 1)
    CONSENTBOT_TEST_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test .venv/bin/python bench/bench_faults.py
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults.inject import FaultySlack  # noqa: E402
from tests.faults.outcome import Row, header  # noqa: E402
from tests.faults.scenarios import BENCH, REAL, SCENARIOS, Timing  # noqa: E402


@asynccontextmanager
async def fresh(backend: str, pg: str | None, workdir: Path) -> AsyncIterator[str]:
    """A new, empty database: a SQLite file, or a PostgreSQL database dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir}/{uuid.uuid4().hex}.db"
        return
    import asyncpg

    assert pg is not None
    name = f"consentbot_faults_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def shortfall(row: Row, timing: Timing) -> str | None:
    """What the row failed to hold or prove, or None."""
    if row.doubled or row.lost or row.urgent_delivered != row.urgent_queued:
        return f"doubled {row.doubled}, lost {row.lost}, urgent {row.urgent_delivered}/{row.urgent_queued}"
    if row.faults == 0 or row.queued < timing.messages or row.delivered != row.queued:
        return f"proved nothing: {row.faults} faults, {row.delivered} of {row.queued} delivered"
    return None


async def run_backend(backend: str, pg: str | None, names: list[str], timing: Timing, workdir: Path) -> list[str]:
    """Each scenario on a fresh database; its row printed as soon as it is known. The problems found."""
    problems = []
    for name in names:
        scenario_dir = workdir / f"{backend}-{name}"
        scenario_dir.mkdir()
        async with fresh(backend, pg, workdir) as url:
            try:
                row = await SCENARIOS[name](url, timing, scenario_dir)
            except AssertionError as exc:  # a scenario that could not finish: report it, carry on
                problems.append(f"{backend} {name}: {exc}")
                print(f"{backend:<10} {name} FAILED: {str(exc)[:200]}", flush=True)
                continue
        print(row.line(), flush=True)
        if problem := shortfall(row, timing):
            problems.append(f"{backend} {row.scenario}: {problem}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", action="store_true", help="the real timing: Slack down 5 minutes, 60-s stalls")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios to run, e.g. a,c (default: all)")
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--pg", default=os.environ.get("CONSENTBOT_TEST_DATABASE_URL"))
    parser.add_argument("--no-check", action="store_true", help="withhold im:history, so that the lost-post check "
                        "is off: what the check holds (expect doubles in b, d and e, and exit 1)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the bot's warnings")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    if unknown := set(names) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}: choose from {','.join(SCENARIOS)}")
    # The bot logs every failed attempt; without -v they are dropped, so that the table stays readable.
    logging.getLogger().addHandler(logging.StreamHandler() if args.verbose else logging.NullHandler())
    if args.no_check:
        FaultySlack.scopes = "chat:write"
    timing = REAL if args.long else BENCH
    backends = ["sqlite"] + ([] if args.sqlite_only or not args.pg else ["postgresql"])
    print(timing.describe() + ("; lost-post check OFF (no im:history)" if args.no_check else ""))
    print(header(), flush=True)
    started, problems = time.monotonic(), []
    with tempfile.TemporaryDirectory() as workdir:
        for backend in backends:
            problems += asyncio.run(run_backend(backend, args.pg, names, timing, Path(workdir)))
    print(f"{len(names) * len(backends)} scenario runs in {time.monotonic() - started:.0f} s: "
          + ("; ".join(problems) if problems else "nothing lost, nothing doubled, every urgent message delivered"))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
