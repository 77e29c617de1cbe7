"""Benchmark: real checklist answers through POST /slack/events, against a bare Bolt app and a
raw-driver floor, in the same run, at the same concurrency.

    PYTHONPATH=. .venv/bin/python bench/bench_slack.py [--postgres URL] [--requests 300] [--rounds 3]
    PYTHONPATH=. .venv/bin/python bench/bench_slack.py --quick      # a smoke test: a few answers, one round

Three apps, driven in-process over ASGI (httpx.ASGITransport) with signed view_submission requests:
- bare:  a Bolt app whose listener only acks (the cost of HTTP, signature check and Bolt);
- floor: the same Bolt app, whose listener does an answer's durable writes in one transaction with
  the raw driver (sqlite3 with synchronous=FULL in WAL, or asyncpg): claim the delivery, read the
  case, append an event, bump the case's version. What no ORM, no product logic would cost;
- real:  the product (bot.app.build_app) answering the step each case waits on.

Every measured request is a real answer: each case is raised (untimed) before its round, the
request answers the step the case is at, with answers the policy accepts (built from the step's
fields, as tests/completed_case.py does), from a view id used once. After each round the bench
counts the rows written (case_events for real, floor_events for the floor) and fails if they are
not exactly one per request: a replay or a refusal can never pass for a fast answer.

Prints an fsync probe (a 4 KiB write + fsync beside the database, median of 50), then per round
and as medians over the rounds: requests/s, p50 and p99 latency, and the ratios real/bare,
floor/bare and real/floor; then real/bare round by round (each real round against the bare round
measured just before it) and their median, steadier on a machine whose speed drifts. SQLite
always; PostgreSQL too when --postgres names a server (a fresh database is created on it and
dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text

from bot import cases, people
from bot.app import build_app, freeze_startup_heap
from bot.cases import CaseView, Person, Services
from bot.config import Settings
from bot.crypto import Keyring, generate_key
from bot.policy.loader import load_policy
from bot.policy.model import Actor, FieldType, Step
from storage.db import create_database
from storage.migrate import upgrade
from tests.completed_case import SIGNIFICANT_HARM_REFUSED, values_for
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import form_body, sign

SECRET, TOKEN = "bench-secret", "xoxb-bench"
USERS = {Actor.STAFF: "U0BENCH001", Actor.DSL: "U0BENCHDSL"}
EVENT_BODY = "x" * 600  # about an encrypted answer's size


class ShortfallError(AssertionError):
    """A round wrote fewer (or more) rows than it sent requests: its figures would lie."""


@dataclass
class Round:
    rps: float
    p50: float
    p99: float


# --- the three apps -------------------------------------------------------------------------

def bolt_app(fake: FakeSlack, work: Callable[[str], Awaitable[None]] | None = None) -> FastAPI:
    """A Bolt app whose step listener acks, after `work(view id)` if given."""
    bolt = AsyncApp(client=AsyncWebClient(token=TOKEN, base_url=fake.url), signing_secret=SECRET,
                    process_before_response=True)

    @bolt.view(re.compile("^step:"))
    async def listener(ack: Any, body: dict[str, Any]) -> None:
        if work is not None:
            await work(str(body["view"]["id"]))
        await ack()

    handler, app = AsyncSlackRequestHandler(bolt), FastAPI()

    @app.post("/slack/events")
    async def events(request: Request) -> Response:
        return await handler.handle(request)

    return app


class SqliteFloor:
    """An answer's writes with the sync sqlite3 driver, one transaction per call in a worker thread,
    writers queued on an asyncio lock as storage/db.py queues them.
    """

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=2000"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.conn.executescript(FLOOR_SCHEMA.replace("SERIAL", "INTEGER"))
        self.turn = asyncio.Lock()

    async def prepare(self, n: int) -> None:
        self.conn.executemany("INSERT INTO floor_cases (version) VALUES (1)", [()] * n)

    async def answer(self, key: str) -> None:
        async with self.turn:
            await asyncio.to_thread(self._answer, key)

    def _answer(self, key: str) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("INSERT INTO floor_claims (key) VALUES (?) ON CONFLICT DO NOTHING", (key,))
            case_id, version = c.execute("SELECT id, version FROM floor_cases WHERE version = 1 LIMIT 1").fetchone()
            c.execute("INSERT INTO floor_events (case_id, seq, body) VALUES (?, ?, ?)", (case_id, version, EVENT_BODY))
            c.execute("UPDATE floor_cases SET version = version + 1 WHERE id = ?", (case_id,))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    async def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM floor_events").fetchone()[0])

    async def close(self) -> None:
        self.conn.close()


class PostgresFloor:
    """An answer's writes with asyncpg: a pool like the engine's, one transaction per answer."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, url: str) -> PostgresFloor:
        import asyncpg  # type: ignore[import-untyped]

        pool = await asyncpg.create_pool(url.replace("postgresql+asyncpg://", "postgresql://"), min_size=5,
                                         max_size=15)
        await pool.execute(FLOOR_SCHEMA)
        return cls(pool)

    async def prepare(self, n: int) -> None:
        await self.pool.execute("INSERT INTO floor_cases (version) SELECT 1 FROM generate_series(1, $1)", n)

    async def answer(self, key: str) -> None:
        async with self.pool.acquire() as c, c.transaction():
            await c.execute("INSERT INTO floor_claims (key) VALUES ($1) ON CONFLICT DO NOTHING", key)
            case_id, version = await c.fetchrow("SELECT id, version FROM floor_cases WHERE version = 1 LIMIT 1 "
                                                "FOR UPDATE SKIP LOCKED")
            await c.execute("INSERT INTO floor_events (case_id, seq, body) VALUES ($1, $2, $3)",
                            case_id, version, EVENT_BODY)
            await c.execute("UPDATE floor_cases SET version = version + 1 WHERE id = $1", case_id)

    async def count(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM floor_events"))

    async def close(self) -> None:
        await self.pool.close()


FLOOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS floor_cases (id SERIAL PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS floor_events (id SERIAL PRIMARY KEY, case_id INTEGER NOT NULL, seq INTEGER NOT NULL,
                                         body TEXT NOT NULL, UNIQUE (case_id, seq));
CREATE TABLE IF NOT EXISTS floor_claims (key TEXT PRIMARY KEY);
"""


# --- real answers ----------------------------------------------------------------------------

class Product:
    """The real app, its services, and cases raised ahead of each round (untimed)."""

    def __init__(self, svc: Services, app: FastAPI, staff: dict[Actor, Person]) -> None:
        self.svc, self.app, self.staff = svc, app, staff

    @classmethod
    async def start(cls, fake: FakeSlack, url: str) -> Product:
        db = create_database(url)
        await upgrade(db)
        svc = Services(db=db, keyring=Keyring.parse(generate_key("b")), policy=load_policy())
        staff = {Actor.STAFF: await people.add(svc, email="t@b.sch.uk", role="staff", name="T", school="b",
                                               slack_user_id=USERS[Actor.STAFF]),
                 Actor.DSL: await people.add(svc, email="d@b.sch.uk", role="dsl", name="D", school="b",
                                             slack_user_id=USERS[Actor.DSL])}
        settings = Settings(_env_file=None, SLACK_SIGNING_SECRET=SECRET, SLACK_BOT_TOKEN=TOKEN,  # type: ignore[call-arg]
                            SLACK_API_URL=fake.url)
        product = cls(svc, build_app(settings, svc), staff)
        freeze_startup_heap()  # as `consentbot serve` does once the app is built
        return product

    async def raise_cases(self, n: int) -> list[CaseView]:
        """`n` new cases, each at the step after the first (they wait on a real answer)."""
        start = self.svc.policy.steps[self.svc.policy.start]
        values = values_for(start, None, SIGNIFICANT_HARM_REFUSED, self.staff[Actor.STAFF])
        return [await cases.raise_concern(self.svc, actor=self.staff[Actor.STAFF], values=values, platform="slack")
                for _ in range(n)]

    def answer_body(self, view: CaseView, view_id: str) -> str:
        """A signed-ready view_submission answering the step `view` waits on, from a fresh view id."""
        assert view.step is not None
        actor = view.step.actor or Actor.STAFF
        values = values_for(view.step, view, SIGNIFICANT_HARM_REFUSED, self.staff[Actor.STAFF])
        modal = {"id": view_id, "hash": f"h{view_id}", "type": "modal", "callback_id": f"step:{view.step.id}",
                 "private_metadata": f"{view.ref}:{view.version}", "state": {"values": slack_state(view.step, values)}}
        return form_body({"type": "view_submission", "user": {"id": USERS[actor]}, "team": {"id": "T0FAKE0001"},
                          "view": modal})

    async def count(self) -> int:
        async with self.svc.db.read() as s:
            return int((await s.execute(text("SELECT count(*) FROM case_events"))).scalar_one())


def slack_state(step: Step, values: dict[str, Any]) -> dict[str, Any]:
    """view.state.values for `values`, shaped as Slack sends each field's element (the inverse of
    handlers.slack.parse.parse_values).
    """
    state: dict[str, Any] = {}
    for f in step.fields:
        if f.key not in values:
            continue
        value = values[f.key]
        if f.type in (FieldType.REASONS, FieldType.LEGAL_REFS):
            element: dict[str, Any] = {"selected_options": [{"value": v} for v in value]}
        elif f.type in (FieldType.CHOICE, FieldType.ASSIGNEE) and f.options:
            element = {"selected_option": {"value": value}}
        elif f.type is FieldType.DATETIME:
            element = {"selected_date_time": int(datetime.fromisoformat(value).timestamp())}
        elif f.type is FieldType.DATE:
            element = {"selected_date": value}
        else:
            element = {"value": value}
        state[f.key] = {f.key: element}
    return state


# --- timing ----------------------------------------------------------------------------------

async def timed(app: FastAPI, bodies: list[str], concurrency: int) -> Round:
    """Send `bodies` `concurrency` at a time; each must be answered 200 without errors."""
    gate, latencies = asyncio.Semaphore(concurrency), []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:

        async def one(body: str) -> None:
            async with gate:
                headers = {**sign(SECRET, body), "Content-Type": "application/x-www-form-urlencoded"}
                started = time.perf_counter()
                response = await client.post("/slack/events", content=body.encode(), headers=headers)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200 or '"errors"' in response.text:
                    raise ShortfallError(f"answer refused: {response.status_code} {response.text[:300]}")

        began = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        wall = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100)
    return Round(len(bodies) / wall, cuts[49], cuts[98])


async def counted(name: str, count: Callable[[], Awaitable[int]], run: Awaitable[Round], expected: int) -> Round:
    """`run`, then fail unless exactly `expected` rows were written by it."""
    before = await count()
    result = await run
    written = await count() - before
    if written != expected:
        raise ShortfallError(f"{name}: {written} rows written for {expected} requests")
    return result


def body_for_bare(n: int) -> str:
    view = {"id": f"VBARE{n:07d}", "hash": f"h{n}", "type": "modal", "callback_id": "step:bench",
            "private_metadata": "C-X:1", "state": {"values": {}}}
    return form_body({"type": "view_submission", "user": {"id": USERS[Actor.STAFF]}, "team": {"id": "T0FAKE0001"},
                      "view": view})


async def bench_database(label: str, url: str, floor: Any, fake: FakeSlack, requests: int, rounds: int,
                         concurrency: int) -> dict[str, list[Round]]:
    product = await Product.start(fake, url)
    bare, floored = bolt_app(fake), bolt_app(fake, floor.answer)
    serial = iter(range(10**9))
    results: dict[str, list[Round]] = {"bare": [], "floor": [], "real": []}
    try:
        for k in range(rounds + 1):  # round 0 warms up (auth.test, pools, caches), and is checked too
            views = await product.raise_cases(requests)
            await floor.prepare(requests)
            bare_r = await timed(bare, [body_for_bare(next(serial)) for _ in range(requests)], concurrency)
            floor_r = await counted("floor", floor.count, timed(floored, [body_for_bare(next(serial))
                                                                          for _ in range(requests)], concurrency),
                                    requests)
            bodies = [product.answer_body(v, f"V{uuid.uuid4().hex[:12].upper()}") for v in views]
            real_r = await counted("real", product.count, timed(product.app, bodies, concurrency), requests)
            if k == 0:
                continue
            for name, r in (("bare", bare_r), ("floor", floor_r), ("real", real_r)):
                results[name].append(r)
            print(f"  {label} round {k}: " + " | ".join(
                f"{n} {r.rps:6.0f}/s p50 {r.p50:5.1f} p99 {r.p99:6.1f} ms"
                for n, r in (("bare", bare_r), ("floor", floor_r), ("real", real_r))), flush=True)
    finally:
        await product.svc.db.dispose()
        await floor.close()
    return results


# --- the run ---------------------------------------------------------------------------------

def fsync_probe(folder: Path, n: int = 50) -> float:
    """Median ms of a 4 KiB write + fsync in `folder`: a throttled disk changes every figure here."""
    path, block, times = folder / "fsync.probe", os.urandom(4096), []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(n):
            started = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times)


async def create_pg_database(base: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    import asyncpg

    name, plain = f"cb_bench_{uuid.uuid4().hex[:10]}", base.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(plain, timeout=10)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()

    async def drop() -> None:
        c = await asyncpg.connect(plain, timeout=10)
        await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await c.close()

    return base.rsplit("/", 1)[0] + "/" + name, drop


async def main(*, requests: int, rounds: int, concurrency: int, postgres: str | None) -> dict[str, Any]:
    """Run the bench; returns the medians per database (for tests/test_bench.py)."""
    logging.disable(logging.INFO)  # a bench measures work, not log formatting
    summary: dict[str, Any] = {}
    with FakeSlack() as fake, tempfile.TemporaryDirectory() as workdir:
        folder = Path(workdir)
        print(f"fsync probe: {fsync_probe(folder):.2f} ms per 4 KiB write+fsync (median of 50), in {folder}")
        print(f"concurrency {concurrency}, {requests} answers a round, {rounds} rounds after a warm-up round")
        floor: Any = SqliteFloor(folder / "floor.db")
        summary["sqlite"] = report("sqlite", await bench_database(
            "sqlite", f"sqlite+aiosqlite:///{folder}/bench.db", floor, fake, requests, rounds, concurrency))
        if postgres:
            url, drop = await create_pg_database(postgres)
            try:
                floor = await PostgresFloor.open(url)
                summary["postgres"] = report("postgres", await bench_database(
                    "postgres", url, floor, fake, requests, rounds, concurrency))
            finally:
                await drop()
    logging.disable(logging.NOTSET)
    return summary


def report(label: str, results: dict[str, list[Round]]) -> dict[str, float]:
    med = {name: Round(*(statistics.median(getattr(r, a) for r in rs) for a in ("rps", "p50", "p99")))
           for name, rs in results.items()}
    print(f"{label}: medians over {len(results['real'])} rounds (every answer counted as written)")
    for name, r in med.items():
        print(f"  {name:5}: {r.rps:7.0f} req/s   p50 {r.p50:6.1f} ms   p99 {r.p99:6.1f} ms")
    ratios = {"real/bare": med["real"].rps / med["bare"].rps, "floor/bare": med["floor"].rps / med["bare"].rps,
              "real/floor": med["real"].rps / med["floor"].rps}
    print("  ratios: " + "   ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    # Each round's real against the bare round measured just before it: on a shared machine whose
    # speed drifts between rounds, a steadier reading than the ratio of the medians (printed above,
    # and the one the targets are judged by).
    by_round = [r.rps / b.rps for r, b in zip(results["real"], results["bare"], strict=True)]
    paired = statistics.median(by_round)
    print(f"  real/bare round by round: {' '.join(f'{x:.3f}' for x in by_round)} (median {paired:.3f})")
    return {**ratios, "real/bare paired": paired, "real_p50": med["real"].p50, "real_p99": med["real"].p99}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--postgres", help="a PostgreSQL server URL (postgresql+asyncpg://...): bench it too")
    parser.add_argument("--quick", action="store_true", help="smoke test: 24 answers, one round")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 24, 1
    asyncio.run(main(requests=args.requests, rounds=args.rounds, concurrency=args.concurrency,
                     postgres=args.postgres))
