"""Plain SQL for the answer's prebuilt Core statements (issue 12): compiled once per dialect and
run on the driver's own connection (the `sqlite3` cursor, the `asyncpg` connection), in the
transaction SQLAlchemy began. SQLAlchemy's execution machinery cost as much per statement as the
database's own work on these (py-spy: 8.4% of an answer's CPU around SQLite's 7.9%).

Only a statement that needs nothing of SQLAlchemy at run time qualifies: no default or onupdate
to compute, no expanding IN. Parameters and results are converted with SQLAlchemy's own bind
and result processors (a date stored as text on SQLite comes back as the same aware datetime),
and a refusal is raised as SQLAlchemy raises it (IntegrityError, OperationalError), without the
parameters in its message, as the engines raise theirs, so callers see no difference. Anything
else goes through SQLAlchemy as before.
"""

from __future__ import annotations

import collections
import functools
import sqlite3
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Insert, Numeric, Select, Update
from sqlalchemy.exc import DBAPIError

M = TypeVar("M")
T = TypeVar("T")


@dataclass(frozen=True)
class PlainSql:
    """A statement as its dialect's SQL, and how to fill its placeholders."""

    sql: str
    # In placeholder order: the parameter's name, its conversion, its value when not given (a LIMIT's).
    binds: tuple[tuple[str, Callable[[Any], Any] | None, Any], ...]
    columns: tuple[str, ...]
    # Per result column, SQLAlchemy's conversion of what the driver returns; None when no column has one.
    converts: tuple[Callable[[Any], Any] | None, ...] | None = None

    def values(self, params: Mapping[str, Any] | None) -> list[Any]:
        """The placeholders' values, converted as SQLAlchemy converts them."""
        given = params or {}
        values = []
        for name, convert, fixed in self.binds:
            value = given.get(name, fixed)
            values.append(value if convert is None else convert(value))
        return values

    def rows(self, fetched: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """The driver's rows as SQLAlchemy would return them."""
        if self.converts is None:
            return [tuple(row) for row in fetched]
        converts = self.converts
        return [tuple(value if convert is None else convert(value) for convert, value in zip(converts, row, strict=True))
                for row in fetched]


@dataclass(frozen=True)
class PlainResult:
    """What the hot path reads of a result: its rows (by name) and how many rows it changed."""

    rows: list[tuple[Any, ...]]
    columns: tuple[str, ...]
    rowcount: int

    def first(self) -> Any:  # noqa: D102 - as Result's
        return _row_type(self.columns)(*self.rows[0]) if self.rows else None

    def all(self) -> list[Any]:  # noqa: D102 - as Result's
        row = _row_type(self.columns)
        return [row(*values) for values in self.rows]


def detached(model: type[M], result: Any) -> list[M]:
    """The rows of a select of `model`'s columns (a PlainResult or SQLAlchemy's Result) as `model`
    instances outside any session (`snapshot`).
    """
    columns, rows = (result.columns, result.rows) if isinstance(result, PlainResult) else (result.keys(), result.all())
    return [snapshot(model, zip(columns, row, strict=True)) for row in rows]


def snapshot(model: type[M], values: Iterable[tuple[str, Any]]) -> M:
    """A `model` instance of these (column, value) pairs, built as the ORM builds what it loads,
    but outside any session: a read-only snapshot. A change to one is never written (the hot path
    writes with Core statements). The ORM's per-row and per-statement machinery cost more than
    the rows themselves (issue 12).
    """
    instance: M = model._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    instance.__dict__.update(values)
    return instance


@functools.lru_cache(maxsize=32)
def _row_type(columns: tuple[str, ...]) -> Any:
    """A row's type, made once per set of columns (a namedtuple class costs ~0.1 ms to make)."""
    return collections.namedtuple("Row", columns)


# Per statement object, weakly: the hot statements are module constants and stay; a statement a
# caller builds afresh is forgotten with it, so this cannot grow for ever nor crowd them out.
_PLAIN: weakref.WeakKeyDictionary[Any, dict[tuple[str, tuple[str, ...]], PlainSql | None]] = \
    weakref.WeakKeyDictionary()


def plain_sql(statement: Any, dialect: Any, keys: tuple[str, ...]) -> PlainSql | None:
    """`statement` compiled for `dialect` once per set of parameter names; None when running it
    needs SQLAlchemy: a text() statement, a default or an onupdate to compute, an expanding IN,
    a number whose conversion depends on what the driver says of it.
    """
    if not isinstance(statement, (Insert, Update, Select)):
        return None
    forms = _PLAIN.setdefault(statement, {})
    key = (dialect.name, keys)
    if key not in forms:
        forms[key] = _compiled(statement, dialect, keys)
    return forms[key]


def _compiled(statement: Insert | Update | Select[Any], dialect: Any, keys: tuple[str, ...]) -> PlainSql | None:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    types = [c.type for c in compiled._result_columns]
    needs = ("insert_prefetch", "update_prefetch", "postfetch", "returning")
    if (compiled.positiontup is None or any(getattr(compiled, n, None) for n in needs)
            or any(b.expanding for b in compiled.binds.values())
            or any(issubclass(t._type_affinity or type(t), Numeric) for t in types)
            or any(n not in keys and compiled.binds[n].required for n in compiled.positiontup)):
        return None
    converts = tuple(t._cached_result_processor(dialect, None) for t in types)
    return PlainSql(compiled.string, tuple(
        (name, compiled.binds[name].type._cached_bind_processor(dialect), compiled.binds[name].value)
        for name in compiled.positiontup), tuple(c.keyname for c in compiled._result_columns),
        converts if any(converts) else None)


def run_on_sqlite(driver: sqlite3.Connection, plain: PlainSql, params: Mapping[str, Any] | None) -> PlainResult:
    """Run `plain` on the `sqlite3` connection, in its open transaction."""
    values = plain.values(params)
    cursor = driver.cursor()
    try:
        cursor.execute(plain.sql, values)
        return PlainResult(plain.rows(cursor.fetchall()) if plain.columns else [], plain.columns, cursor.rowcount)
    except sqlite3.Error as error:  # as SQLAlchemy raises it: callers catch IntegrityError, OperationalError
        raise DBAPIError.instance(plain.sql, values, error, sqlite3.Error, hide_parameters=True) from error
    finally:
        cursor.close()


async def run_on_asyncpg(fairy: Any, plain: PlainSql, params: Mapping[str, Any] | None, dbapi: Any) -> PlainResult:
    """Run `plain` on the asyncpg connection under SQLAlchemy's pooled `fairy`, in the transaction
    storage.db began on it. `dbapi` is SQLAlchemy's asyncpg adapter module, whose exceptions
    SQLAlchemy raises.
    """
    values = plain.values(params)
    driver = fairy.driver_connection
    if plain.columns:
        rows = await on_driver(fairy, plain.sql, lambda: driver.fetch(plain.sql, *values), values, dbapi)
        return PlainResult(plain.rows(rows), plain.columns, len(rows))
    status = await on_driver(fairy, plain.sql, lambda: driver.execute(plain.sql, *values), values, dbapi)
    count = status.rsplit(" ", 1)[-1]  # "UPDATE 1", "INSERT 0 1"
    return PlainResult([], (), int(count) if count.isdigit() else -1)


async def on_driver(fairy: Any, sql: str, call: Callable[[], Awaitable[T]], values: Sequence[Any] = (),
                    dbapi: Any = None) -> T:
    """`await call()` on the asyncpg connection under `fairy`, its error raised as SQLAlchemy raises
    one (IntegrityError, OperationalError...), translated by SQLAlchemy's adapter, without the
    parameters in its message. `sql` names what was sent, for the message.
    """
    try:
        return await call()
    except Exception as error:  # noqa: BLE001 - translated as SQLAlchemy's adapter translates it
        dbapi = dbapi or fairy.dbapi_connection.dbapi
        try:
            fairy.dbapi_connection._handle_exception(error)
        except dbapi.Error as adapted:
            raise DBAPIError.instance(sql, list(values), adapted, dbapi.Error, hide_parameters=True) from error
        raise
