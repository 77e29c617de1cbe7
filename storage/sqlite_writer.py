"""SQLite's writer thread: a whole write transaction in one hand-off.

aiosqlite runs each call (execute, fetch, close, commit) in its thread and wakes the event loop
when it returns: an answer's ten statements made some 40 hand-offs, each ~0.15 ms on an idle
2-core machine and far more under load, and they, not SQLite, were most of an answer's time
(issue 12). Here a unit of work (`async def work(session)`, the same code that runs on
PostgreSQL) runs start to finish in one dedicated thread, on the plain `sqlite3` driver: the
event loop hands it over once and is woken once, with the committed result or the exception.

The unit sees an `AsyncSession`-shaped facade over a synchronous `Session`: its awaits complete
at once, so a unit never yields inside the writer's loop and units run one after another, as
SQLite's single writer requires. Units must only use the database and plain computation (no
event-loop objects of the caller's loop): bot/cases.py's answer and raise are such units.
Long reads and jobs (sweep, export, verify) stay on aiosqlite: they never block the event loop,
and the writer thread never waits for them in this process (writers queue on Database's lock).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

T = TypeVar("T")


class SyncBackedSession:
    """The part of AsyncSession the units use, over a synchronous Session: every await is immediate."""

    def __init__(self, session: Session) -> None:
        self.sync_session = session

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

    async def refresh(self, instance: object, attribute_names: Sequence[str] | None = None) -> None:  # noqa: D102 - as AsyncSession's
        self.sync_session.refresh(instance, attribute_names)

    async def delete(self, instance: object) -> None:  # noqa: D102 - as AsyncSession's
        self.sync_session.delete(instance)

    async def connection(self) -> SyncBackedConnection:  # noqa: D102 - as AsyncSession's
        return SyncBackedConnection(self.sync_session.connection())

    async def run_sync(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:  # noqa: D102 - as AsyncSession's
        return fn(self.sync_session, *args, **kw)


class SyncBackedConnection:
    """The part of AsyncConnection the hot path uses (Core statements, without the ORM's session)."""

    def __init__(self, connection: Connection) -> None:
        self.sync_connection = connection

    async def execute(self, statement: Any, params: Any = None) -> Any:  # noqa: D102 - as AsyncConnection's
        return self.sync_connection.execute(statement, params)


class SqliteWriter:
    """One thread, its own event loop and a synchronous engine on the same database file.
    `options`: execution options of its sessions (a reader's marks its transactions read-only).
    """

    def __init__(self, url: str, *, configure: Callable[[Engine], None], options: dict[str, Any] | None = None,
                 name: str = "consentbot-sqlite-writer") -> None:
        self.engine = create_engine(url.replace("sqlite+aiosqlite", "sqlite+pysqlite", 1))
        configure(self.engine)
        self._bind = self.engine.execution_options(**options) if options else self.engine
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]], *, info: dict[str, Any]) -> T:
        """`work` in one transaction in the writer thread: committed when it returns, rolled back
        when it raises (the exception is raised here).
        """
        done = asyncio.run_coroutine_threadsafe(self._unit(work, info), self._loop)
        return await asyncio.wrap_future(done)

    async def _unit(self, work: Callable[[AsyncSession], Awaitable[T]], info: dict[str, Any]) -> T:
        with Session(self._bind, expire_on_commit=False) as session, session.begin():
            session.info.update(info)
            return await work(cast(AsyncSession, SyncBackedSession(session)))

    def close(self) -> None:
        """Stop the thread and close its connections (pending units finish first)."""
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self.engine.dispose()
