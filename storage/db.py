"""The async engine. Built by a function, never at import, so each test gets its own."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine, event, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage.plain import on_driver, plain_sql, run_on_asyncpg

if TYPE_CHECKING:
    from storage.audit import Sealer
    from storage.sqlite_writer import SqliteWriter

T = TypeVar("T")

logger = logging.getLogger(__name__)

# Slack gives an interaction 3 s: a database that does not answer within this must fail the
# request with an error while there is still time to say so, not hang it for a minute.
TIMEOUT_SECONDS = 2.0
_READ_ONLY = "consentbot_read_only"  # execution option: this connection's transactions only read
SEALER = "consentbot.sealer"  # Session.info key read by storage.audit.sealer_of
# Session.info key: PostgreSQL, the session's pooled connection and dialect, once its transaction
# has begun (core() then runs plain SQL on it without asking the session, a greenlet hop each time).
_DRIVER = "consentbot.driver"
# A pooled PostgreSQL connection is replaced after this long, before a firewall or a proxy drops
# it silently (a half-open connection would only fail at command_timeout).
RECYCLE_SECONDS = 600
# Pooled PostgreSQL connections kept open for reuse, and how many more a burst may open. The
# default (5) closed every connection beyond the fifth as soon as it was returned, so 16 answers
# at once opened and closed ~10 connections a round: a TLS attempt, authentication and a server
# process each, 1 ms of our CPU and 1 ms of the server's per answer (issue 12).
POOL_SIZE, POOL_OVERFLOW = 20, 10


@dataclass
class Database:
    """An engine and its session factories. `transaction()` is the only way to write; `read()` only reads."""

    engine: AsyncEngine
    # SQLite's session factories, for writing and for reading. On PostgreSQL each transaction binds
    # a session to the connection it checked out (_postgres_transaction), and these are not used.
    sessions: async_sessionmaker[AsyncSession]
    readers: async_sessionmaker[AsyncSession]
    _sqlite_turn: asyncio.Lock | None = field(default=None, repr=False)
    # Seals the audit chains written in `transaction()`; set by bot.cases.Services from its key ring.
    sealer: Sealer | None = field(default=None, repr=False)
    # SQLite: the readers' own pool, whose connections are read-only for good (no PRAGMA switching
    # a pooled connection between reading and writing: two statements, and their thread hand-offs,
    # on most requests).
    reader_engine: AsyncEngine | None = field(default=None, repr=False)
    # SQLite: builds the writer thread that runs `unit()`s (None: units run as transaction()s).
    make_writer: Callable[[], SqliteWriter] | None = field(default=None, repr=False)
    _writer: SqliteWriter | None = field(default=None, repr=False)
    # SQLite: the same for short reads on every request (who is this?), in a thread of their own.
    make_reader: Callable[[], SqliteWriter] | None = field(default=None, repr=False)
    _reader: SqliteWriter | None = field(default=None, repr=False)
    # SQLite: held by whoever of this process writes, the writer thread's batches and transaction()s.
    write_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def is_sqlite(self) -> bool:
        """SQLite serialises writers with BEGIN IMMEDIATE; PostgreSQL uses row locks."""
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One transaction: commits on success, rolls back on any exception. Not re-entrant."""
        if not self.is_sqlite:
            async with _postgres_transaction(self.engine) as session:
                session.info[SEALER] = self.sealer
                yield session
            return
        # SQLite has one writer at a time, and a blocked BEGIN IMMEDIATE waits in SQLite's busy
        # handler, which sleeps in growing steps: under load that sleeping, not the work, made the
        # tail (p99 ~0.8 s at 16 concurrent answers). Queueing this process's transactions on an
        # asyncio lock hands the database over as soon as it is free; other processes still
        # meet the busy handler, which remains the cross-process guard.
        # The writer thread (unit()) takes its turns on `write_lock` too: without it, a job's
        # transactions back to back could keep the thread's BEGIN IMMEDIATE waiting past SQLite's
        # busy timeout, failing an answer.
        if self._sqlite_turn is None:
            self._sqlite_turn = asyncio.Lock()
        async with self._sqlite_turn, _holding(self.write_lock), self.sessions() as session, session.begin():
            session.info[SEALER] = self.sealer
            yield session

    async def unit(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`work(session)` in one write transaction, committed when it returns, rolled back when it
        raises; its result is returned. On a SQLite file the whole transaction runs in one go,
        committed with the others of its turn, on the event loop when the database is free, else
        in the writer thread (storage/sqlite_writer.py): `work` may use only the session and
        plain computation. Elsewhere it is `transaction()`.
        """
        if self.make_writer is None:
            async with self.transaction() as session:
                return await work(session)
        # Not behind _sqlite_turn: units queue in the writer thread, which commits those waiting
        # together. transaction()'s writers (long jobs) meet it at SQLite's write lock only.
        if self._writer is None:
            self._writer = self.make_writer()
        return await self._writer.run(work, info={SEALER: self.sealer})

    async def quick_read(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`work(session)` in a read-only transaction, for the short reads every request makes
        (identifying the person): on a SQLite file in one hand-off to the reader thread, so it
        never waits for the writer, nor a long job's read for it. Long reads use `read()`.
        """
        if self.make_reader is None:
            async with self.read() as session:
                return await work(session)
        if self._reader is None:
            self._reader = self.make_reader()
        return await self._reader.run(work, info={})

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction over one consistent snapshot, which never waits for writers
        nor makes them wait: on SQLite a deferred BEGIN (WAL lets readers run beside the one
        writer) outside the writers' queue; on PostgreSQL a READ ONLY transaction.
        """
        if not self.is_sqlite:
            async with _postgres_transaction(self.engine, read_only=True) as session:
                yield session
            return
        async with self.readers() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        """Close every pooled connection. The database may then be used from another event loop."""
        await self.engine.dispose()
        if self.reader_engine is not None:
            await self.reader_engine.dispose()
        for thread in (self._writer, self._reader):
            if thread is not None:
                await asyncio.to_thread(thread.close)
        self._writer = self._reader = None
        self._sqlite_turn = None  # an asyncio lock belongs to the loop that first waited on it


@asynccontextmanager
async def _holding(lock: threading.Lock) -> AsyncIterator[None]:
    """Hold a thread lock from the event loop: waited for in a worker thread (one hand-off), and
    never left held by a waiter that was cancelled meanwhile.
    """
    if not lock.acquire(blocking=False):
        waiting = asyncio.ensure_future(asyncio.to_thread(lock.acquire))
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            waiting.add_done_callback(lambda done: lock.release() if not done.cancelled() and done.result() else None)
            raise
    try:
        yield
    finally:
        lock.release()


async def core(session: AsyncSession, statement: Any, params: Any = None) -> Any:
    """Run a Core statement on the session's connection, in its transaction, bypassing the ORM's
    per-statement machinery (a fifth of the cost on the answer's path). Pending ORM changes are
    not flushed first: use it for statements that do not depend on them. On PostgreSQL a
    prebuilt statement runs as plain SQL on asyncpg (storage/plain.py), once the transaction
    has begun on the server (it has, in `transaction()` and `unit()`).
    """
    driver = session.info.get(_DRIVER)
    if driver is not None:
        fairy, dialect = driver
        plain = plain_sql(statement, dialect, tuple(params or ()))
        if plain is not None and fairy.dbapi_connection._transaction is not None:
            return await run_on_asyncpg(fairy, plain, params, dialect.dbapi)
    return await (await session.connection()).execute(statement, params)


def create_database(url: str, *, timeout: float = TIMEOUT_SECONDS, statement_timeout: float | None = TIMEOUT_SECONDS,
                    **engine_args: Any) -> Database:
    """Build the engine for `url` (sqlite+aiosqlite or postgresql+asyncpg).

    Every engine hides a statement's parameters from its error messages (`hide_parameters`):
    an error is logged, and a parameter may be a person's name or a sealed record.

    `timeout` bounds connecting (PostgreSQL) or waiting for another process's write lock
    (SQLite's busy timeout); `statement_timeout` bounds one PostgreSQL statement (None: no
    limit, for migrations). A new SQLite file is created private (0600) first.
    """
    if url.startswith("sqlite"):
        _create_private_sqlite_file(url)
        engine = create_async_engine(url, connect_args={"timeout": timeout}, hide_parameters=True, **engine_args)
        _serialise_sqlite_writers(engine, busy_ms=int(timeout * 1000))
        if make_url(url).database not in (None, "", ":memory:"):  # a memory database is one connection's own
            readers = create_async_engine(url, connect_args={"timeout": timeout}, hide_parameters=True, **engine_args)
            _serialise_sqlite_writers(readers, busy_ms=int(timeout * 1000), read_only=True)
            lock = threading.Lock()
            return Database(write_lock=lock, engine=engine, sessions=async_sessionmaker(engine, expire_on_commit=False),
                            readers=async_sessionmaker(readers.execution_options(**{_READ_ONLY: True}),
                                                       expire_on_commit=False), reader_engine=readers,
                            make_writer=lambda: _sqlite_writer(url, busy_ms=int(timeout * 1000), lock=lock),
                            make_reader=lambda: _sqlite_writer(url, busy_ms=int(timeout * 1000), read_only=True))
    else:
        engine = create_async_engine(url, pool_recycle=RECYCLE_SECONDS, pool_timeout=timeout, hide_parameters=True,
                                     pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW,
                                     connect_args=_postgres_timeouts(timeout, statement_timeout), **engine_args)
        _discard_closed_postgres_connections(engine)
    return Database(engine=engine, sessions=async_sessionmaker(engine, expire_on_commit=False),
                    readers=async_sessionmaker(engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False))


def _postgres_timeouts(timeout: float, statement_timeout: float | None) -> dict[str, Any]:
    """The asyncpg connect timeout; the server cancels a long statement, and the client gives up
    a little later in case the server itself no longer answers (a half-open connection).
    """
    if statement_timeout is None:
        return {"timeout": timeout}
    return {"timeout": timeout, "command_timeout": statement_timeout + 1,
            "server_settings": {"statement_timeout": str(int(statement_timeout * 1000))}}


def _discard_closed_postgres_connections(engine: AsyncEngine) -> None:
    # No pre-ping: SQLAlchemy's costs three round trips per checkout (BEGIN, ";", ROLLBACK), 6 of
    # an answer's 16 (issue 12). A connection the server closed (restart, pg_terminate_backend,
    # idle timeout) has told asyncpg so, and asyncpg marks it closed without a round trip: such a
    # connection is discarded at checkout and the pool hands out another (DisconnectionError is
    # the pool's own signal for this). One that died unnoticed is caught by _begin_postgres.
    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the server closed this pooled connection")


@asynccontextmanager
async def _postgres_transaction(engine: AsyncEngine, *, read_only: bool = False) -> AsyncIterator[AsyncSession]:
    """A session on a connection whose transaction (READ ONLY if asked) has begun on the server:
    commits on success, rolls back on any exception.

    The session is bound to the connection, not to the engine, and begins nothing of its own
    until the ORM is used: the answer's statements run as plain SQL on the driver (`core`), and
    then the transaction is ended on the driver too. A session bound to the engine cost 0.15 ms
    more CPU per transaction for its own set-up, begin, commit and close, each through a greenlet:
    as much as three of the answer's statements (issue 12, measured at 16 at once).
    """
    conn = await _begun(engine, read_only=read_only)
    fairy = conn.sync_connection.connection  # type: ignore[union-attr]
    session = AsyncSession(bind=conn, expire_on_commit=False)
    session.info[_DRIVER] = (fairy, conn.dialect)
    try:
        try:
            yield session
        except BaseException:
            session.info.pop(_DRIVER, None)
            try:
                await _end(session, fairy, commit=False)
            except Exception as lost:  # noqa: BLE001 - the connection went with the transaction: drop it
                logger.warning("postgresql: ROLLBACK failed (%s); the connection is discarded", type(lost).__name__)
                await conn.invalidate()
            raise
        session.info.pop(_DRIVER, None)
        await _end(session, fairy, commit=True)
    finally:
        if _orm_used(session) or session.identity_map:
            await session.close()  # detaches what it loaded, as a session of the engine's did
        await conn.close()  # back to the pool, which rolls back anything left open first


async def _end(session: AsyncSession, fairy: Any, *, commit: bool) -> None:
    """Commit or roll back: through the session if the ORM began its transaction on the connection
    (it flushes first), else on the driver, where it began (`_begun`).
    """
    if _orm_used(session):
        await (session.commit() if commit else session.rollback())
    adapted = fairy.dbapi_connection  # None once a lost connection was invalidated: nothing left to end
    if adapted is not None and adapted._transaction is not None:
        await on_driver(fairy, "COMMIT" if commit else "ROLLBACK",
                        lambda: adapted._call_and_discard(adapted._transaction.commit if commit
                                                          else adapted._transaction.rollback))


def _orm_used(session: AsyncSession) -> bool:
    """True when the ORM has begun the session's transaction (any query, flush or add() does):
    then the session commits it, flushing what it holds, or rolls it back, and is closed.
    """
    return session.in_transaction()


async def _begun(engine: AsyncEngine, *, read_only: bool) -> AsyncConnection:
    """A pooled connection whose transaction has begun on the server, retried once on a fresh
    connection if the pooled one turns out dead. BEGIN is a round trip the caller's first
    statement would make anyway; made here, nothing of the caller's has run yet, so the retry is
    safe. A connection lost later, mid-transaction, fails the transaction: nothing of it is
    committed, and the caller's idempotency key makes a resubmission safe.
    """
    for attempt in (1, 2):
        conn = await engine.connect()  # a checkout: a connection known closed is skipped there
        try:
            await _start_transaction(await conn.get_raw_connection(), read_only=read_only)
            return conn
        except Exception:
            # Whatever failed, it was BEGIN on a pooled connection: a connection whose server has
            # gone (asyncpg may still be consuming the server's farewell, so not yet `closed`).
            if not conn.invalidated:
                await conn.invalidate()
            await conn.close()
            if attempt == 2:
                raise
            logger.warning("postgresql: BEGIN failed on a pooled connection; retrying on a new one")
    raise AssertionError("unreachable")


async def _start_transaction(fairy: Any, *, read_only: bool = False) -> None:
    # SQLAlchemy's asyncpg adapter sends BEGIN lazily, with the first statement; this sends it now,
    # as BEGIN READ ONLY when asked (the adapter's own flag, which the dialect's set_readonly sets).
    adapted = fairy.dbapi_connection
    if adapted._transaction is None:
        adapted.readonly = read_only
        try:
            await adapted._start_transaction()
        finally:
            adapted.readonly = False  # the next BEGIN on this pooled connection decides for itself


def _create_private_sqlite_file(url: str) -> None:
    """Create the database file 0600 before SQLite opens it: SQLite gives its -wal and -shm
    files the database file's mode, so all three are private from birth. An existing file
    is left as it is; a missing directory is left for the engine to report.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.exists() or not path.parent.is_dir():
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # another process created it at the same moment, with the same care


def _sqlite_writer(url: str, *, busy_ms: int, read_only: bool = False,
                   lock: threading.Lock | None = None) -> SqliteWriter:
    from storage.sqlite_writer import SqliteWriter

    return SqliteWriter(url, configure=lambda engine, inline: _sqlite_hooks(engine, busy_ms=0 if inline else busy_ms,
                                                                            read_only=read_only),
                        lock=lock, inline=not read_only,
                        options={_READ_ONLY: True} if read_only else None, group=not read_only,
                        name="consentbot-sqlite-reader" if read_only else "consentbot-sqlite-writer")


def _serialise_sqlite_writers(engine: AsyncEngine, *, busy_ms: int, read_only: bool = False) -> None:
    _sqlite_hooks(engine.sync_engine, busy_ms=busy_ms, read_only=read_only)


def _sqlite_hooks(engine: Engine, *, busy_ms: int, read_only: bool = False) -> None:
    # pysqlite's own BEGIN is deferred, so two writers can both read then deadlock on
    # upgrade; taking the write lock up front (BEGIN IMMEDIATE) makes each transaction
    # atomic with respect to the others. Recipe from SQLAlchemy's SQLite dialect docs.
    # Readers (Database.read) keep the deferred BEGIN: in WAL mode they never take the lock.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        if read_only:  # the readers' pool: a write in a read transaction is an error, as on PostgreSQL
            cursor.execute("PRAGMA query_only=1")
        cursor.close()
        _record.info[_READ_ONLY] = read_only  # Connection.info in "begin" below: no switch needed

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = bool(conn.get_execution_options().get(_READ_ONLY))
        # query_only makes a write in a read transaction an error, as READ ONLY does on
        # PostgreSQL; it is set on the pooled connection only when its use changes.
        if conn.info.get(_READ_ONLY, False) != read_only:
            conn.exec_driver_sql(f"PRAGMA query_only={int(read_only)}")
            conn.info[_READ_ONLY] = read_only
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
