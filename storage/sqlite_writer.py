"""SQLite's writer thread: a whole write transaction in one hand-off, and one commit for many.

aiosqlite runs each call (execute, fetch, close, commit) in its thread and wakes the event loop
when it returns: an answer's ten statements made some 40 hand-offs, each ~0.15 ms on an idle
2-core machine and far more under load, and they, not SQLite, were most of an answer's time
(issue 12). Here a unit of work (`async def work(session)`, the same code that runs on
PostgreSQL) runs start to finish in one dedicated thread, on the plain `sqlite3` driver: the
event loop hands it over once and is woken once, with the committed result or the exception.

**Group commit.** Units that arrive while the thread is busy wait in its queue; the thread then
runs all of them in one transaction, each inside its own SAVEPOINT, and commits once. A unit
that raises is rolled back to its savepoint alone and gets its exception; the others are kept.
Every caller hears back only after the commit that made their work durable (synchronous=FULL),
so nothing is acknowledged that a crash could lose, and the fsync is paid once per batch
instead of once per answer.

The unit sees an `AsyncSession`-shaped facade over a synchronous `Session`: its awaits complete
at once, so the thread drives each unit's coroutine to its end in one step, with no event loop
(a unit that waits on anything else is a programming error, refused). Units must use only the
database and plain computation: bot/cases.py's raise and answer are such units. Long reads and
jobs (sweep, export, verify) stay on aiosqlite; they never block the event loop, and they meet
this thread only at SQLite's write lock, each batch holding it for milliseconds.

**On the event loop, when the database is free.** A thread of its own still cost each answer
its GIL: `sqlite3` lets the GIL go around every statement, and getting it back meant waiting for
the event loop to let go, about 1 ms an answer over its 13 statements (measured with
`time.thread_time` around each `cursor.execute`: 0.26 ms of CPU in 1.04-1.54 ms of wall). So a
writer runs its batches on the event loop itself when it can do so without waiting: units that
arrive in one turn of the loop are committed together at the end of it, on a connection whose
busy timeout is zero. When a long job holds this process's write lock, or another process holds
SQLite's (BEGIN IMMEDIATE is refused at once), the batch goes to the thread instead, which waits
as before: the loop never sleeps in SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.plain import plain_sql, run_on_sqlite

T = TypeVar("T")
logger = logging.getLogger(__name__)
BATCH_MAX = 64  # units committed together at most: a bound on how long one batch holds the lock


class SyncBackedSession:
    """The part of AsyncSession the units use, over a synchronous Session: every await is immediate.
    `connection`: the batch's, already begun (asking the Session for it on every statement cost
    a seventh of an answer's unit).
    """

    def __init__(self, session: Session, connection: Connection | None = None) -> None:
        self.sync_session = session
        self._connection = SyncBackedConnection(connection) if connection is not None else None

    @property
    def info(self) -> dict[Any, Any]:  # noqa: D102 - as AsyncSession's
        return self.sync_session.info

    def get_bind(self) -> Any:  # noqa: D102 - as AsyncSession's
        return self.sync_session.get_bind()

    def add(self, instance: object) -> None:  # noqa: D102 - as AsyncSession's
        self.sync_session.add(instance)

    def add_all(self, instances: Sequence[object]) -> None:  # noqa: D102 - as AsyncSession's
        self.sync_session.add_all(instances)

    async def execute(self, statement: Any, params: Any = None, **kw: Any) -> Any:  # noqa: D102 - as AsyncSession's
        return self.sync_session.execute(statement, params, **kw)

    async def scalar(self, statement: Any, params: Any = None, **kw: Any) -> Any:  # noqa: D102 - as AsyncSession's
        return self.sync_session.scalar(statement, params, **kw)

    async def get(self, entity: Any, ident: Any, **kw: Any) -> Any:  # noqa: D102 - as AsyncSession's
        return self.sync_session.get(entity, ident, **kw)

    async def flush(self, objects: Sequence[object] | None = None) -> None:  # noqa: D102 - as AsyncSession's
        self.sync_session.flush(objects)

    async def refresh(self, instance: object, attribute_names: Sequence[str] | None = None) -> None:  # noqa: D102
        self.sync_session.refresh(instance, attribute_names)

    async def delete(self, instance: object) -> None:  # noqa: D102 - as AsyncSession's
        self.sync_session.delete(instance)

    async def connection(self) -> SyncBackedConnection:  # noqa: D102 - as AsyncSession's
        return self._connection or SyncBackedConnection(self.sync_session.connection())

    async def run_sync(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:  # noqa: D102 - as AsyncSession's
        return fn(self.sync_session, *args, **kw)


class SyncBackedConnection:
    """The part of AsyncConnection the hot path uses (Core statements, without the ORM's session);
    the answer's prebuilt statements run as plain SQL on the `sqlite3` cursor (storage/plain.py).
    """

    def __init__(self, connection: Connection) -> None:
        self.sync_connection = connection

    @property
    def dialect(self) -> Any:  # noqa: D102 - as AsyncConnection's
        return self.sync_connection.dialect

    async def execute(self, statement: Any, params: Any = None) -> Any:  # noqa: D102 - as AsyncConnection's
        plain = plain_sql(statement, self.sync_connection.dialect, tuple(params or ()))
        if plain is None:
            return self.sync_connection.execute(statement, params)
        return run_on_sqlite(self.sync_connection.connection.driver_connection, plain, params)  # type: ignore[arg-type]


class UnitWaitedError(RuntimeError):
    """A unit of work awaited something other than the database: it cannot run in the writer thread."""


@dataclass
class _Unit:
    work: Callable[[AsyncSession], Awaitable[Any]]
    info: dict[str, Any]
    done: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)
    context: contextvars.Context = field(default_factory=contextvars.copy_context)  # the caller's request id


class SqliteWriter:
    """One thread and a synchronous engine on the same database file. `options`: execution options
    of its sessions (a reader's marks its transactions read-only). `group`: commit queued units
    together (a writer); a reader runs them one by one. `lock`: held for each batch, and by this
    process's other writers (Database.transaction), so that they take turns rather than meet in
    SQLite's busy handler.
    """

    def __init__(self, url: str, *, configure: Callable[[Engine, bool], None], options: dict[str, Any] | None = None,
                 name: str = "consentbot-sqlite-writer", group: bool = True,
                 lock: threading.Lock | None = None, inline: bool = False) -> None:
        sync_url = url.replace("sqlite+aiosqlite", "sqlite+pysqlite", 1)
        self.engine = create_engine(sync_url, hide_parameters=True)  # as storage.db's engines
        configure(self.engine, False)
        self._bind = self.engine.execution_options(**options) if options else self.engine
        self._group = group
        self._lock = lock or threading.Lock()  # shared with Database.transaction() for a writer
        self._queue: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        # The event loop's own connection: busy timeout zero, so BEGIN IMMEDIATE never waits.
        self.inline_engine = create_engine(sync_url, hide_parameters=True) if inline else None
        if self.inline_engine is not None:
            configure(self.inline_engine, True)
        self._pending: list[_Unit] = []
        self.batches = {"inline": 0, "thread": 0}  # committed batches, for tests and the bench

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]], *, info: dict[str, Any]) -> T:
        """`work` in this turn's batch on the event loop, or in the thread when the database is
        busy: its result once committed, or the exception it raised (its changes rolled back).
        """
        unit = _Unit(work, info)
        if self.inline_engine is None:
            self._to_thread([unit])
        else:
            self._pending.append(unit)
            if len(self._pending) == 1:  # the first of this turn: commit the turn's units after it
                asyncio.get_running_loop().call_soon(self._flush_inline)
        return cast(T, await asyncio.wrap_future(unit.done))

    def _flush_inline(self) -> None:
        """Commit the units of this turn of the loop: on the loop if the database is free now; else in the thread."""
        batch, self._pending = self._pending, []
        if self._lock.acquire(blocking=False):
            try:
                if self._commit(batch, self.inline_engine):
                    self.batches["inline"] += 1
                    return
            finally:
                self._lock.release()
        self._to_thread(batch)

    def _to_thread(self, units: list[_Unit]) -> None:
        """Queue `units` for the writer thread; refused at once if it has stopped (never left waiting)."""
        if not self._thread.is_alive():
            for unit in units:
                if not unit.done.cancelled():
                    unit.done.set_exception(RuntimeError("the database writer has stopped"))
            return
        for unit in units:
            self._queue.put(unit)

    def _serve(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            while self._group and len(batch) < BATCH_MAX:
                try:
                    queued = self._queue.get_nowait()
                except queue.Empty:
                    break
                if queued is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(queued)
            with self._lock:
                self._commit(batch, self._bind, wait=True)
            self.batches["thread"] += 1

    def _commit(self, batch: list[_Unit], bind: Any, *, wait: bool = False) -> bool:
        """Run `batch` in one transaction and tell each caller. False, having run nothing, when
        the write lock is taken and not `wait` (SQLite refused BEGIN IMMEDIATE at once).
        """
        outcomes: list[tuple[_Unit, Any, BaseException | None]] = []
        try:
            with Session(bind, expire_on_commit=False) as session:
                try:
                    begun = session.connection()  # BEGIN IMMEDIATE: the write lock, or "database is locked"
                except OperationalError:
                    if wait:
                        raise
                    return False  # closing the session releases the connection; nothing was begun
                # A caller that has gone (its request cancelled) is not written for: it was told nothing.
                batch = [unit for unit in batch if unit.done.set_running_or_notify_cancel()]
                for unit in batch:
                    outcomes.append(self._run_one(session, begun, unit, savepoint=len(batch) > 1))
                session.commit()
        except BaseException as failed:  # noqa: BLE001 - BEGIN or COMMIT failed: nothing of the batch was kept
            outcomes = [(unit, None, failed) for unit in batch]
        for unit, result, error in outcomes:
            if unit.done.cancelled():
                continue
            if error is None:
                unit.done.set_result(result)
            else:
                unit.done.set_exception(error)
        return True

    def _run_one(self, session: Session, begun: Connection, unit: _Unit, *,
                 savepoint: bool) -> tuple[_Unit, Any, BaseException | None]:
        session.expunge_all()  # each unit loads its own rows: nothing carried over from the one before
        session.info.clear()
        session.info.update(unit.info)
        nested = session.begin_nested() if savepoint else None
        try:
            result: Any = unit.context.run(_drive, unit.work(cast(AsyncSession, SyncBackedSession(session, begun))))
        except BaseException as error:  # noqa: BLE001 - the caller gets it
            if nested is not None:
                nested.rollback()
                return unit, None, error
            raise
        if nested is not None:
            nested.commit()
        return unit, result, None

    def close(self) -> None:
        """Stop the thread (queued units finish first) and close its connections."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=10)
        self.engine.dispose()
        if self.inline_engine is not None:
            self.inline_engine.dispose()


def _drive(awaitable: Awaitable[Any]) -> Any:
    """Run a coroutine that never suspends (its awaits are the facade's) to its end, here and now."""
    coroutine = cast(Coroutine[Any, Any, Any], awaitable)
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value
    coroutine.close()
    raise UnitWaitedError("a unit of work may only use its session: it awaited something else")
