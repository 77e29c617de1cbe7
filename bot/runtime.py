"""Builds the services from settings: database, key ring, policy."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from bot.cases import Services
from bot.config import Settings
from bot.crypto import load_keyring
from bot.policy.loader import DEFAULT_POLICY, load_policy
from storage.db import create_database

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


# Libraries that would log SQL parameters or request bodies stay at WARNING whatever our level.
QUIET_LIBRARIES = ("aiosqlite", "sqlalchemy", "asyncpg", "alembic", "httpx", "httpcore", "slack_bolt", "slack_sdk",
                   "apscheduler", "uvicorn.access", "microsoft_teams", "msgraph", "kiota_http",
                   "kiota_abstractions", "azure", "msal")


def configure_logging(settings: Settings) -> None:
    """Log to stderr. Log lines carry ids and references only, never content."""
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def dev_key_file(settings: Settings) -> Path | None:
    """Where a development key lives: beside the SQLite database."""
    path = settings.sqlite_path()
    return path.with_name(path.name + ".key") if path else None


class DatabaseUrlError(ValueError):
    """DATABASE_URL is not one consentbot can use. Never quotes the URL: it may hold a password."""


SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")


def build_services(settings: Settings, *, migrating: bool = False) -> Services:
    """Everything the use cases need, from the settings. `migrating` (`db upgrade`) lifts the
    statement timeout: a migration may rightly take longer than a request may.
    """
    # The key ring first: it must see whether the SQLite file existed before the engine makes it.
    keyring = load_keyring(configured=settings.encryption_key, production=settings.is_production,
                           dev_key_file=dev_key_file(settings), database_file=settings.sqlite_path())
    policy = load_policy(Path(settings.policy) if settings.policy else DEFAULT_POLICY)
    timeout = settings.db_timeout_seconds
    db = create_database(_checked_url(settings.database_url), timeout=timeout,
                         statement_timeout=None if migrating else timeout)
    return Services(db=db, keyring=keyring, policy=policy, delivering=settings.delivering_platforms())


def _checked_url(url: str) -> str:
    try:
        parsed = make_url(url)
        if parsed.port is not None and not 0 < parsed.port < 65536:
            raise ValueError("port out of range")
    except (ArgumentError, ValueError):
        raise DatabaseUrlError("DATABASE_URL is not a database URL (expected sqlite+aiosqlite:///PATH or "
                               "postgresql+asyncpg://USER:PASSWORD@HOST:PORT/NAME)") from None
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise DatabaseUrlError(f"DATABASE_URL must start with {' or '.join(d + '://' for d in SUPPORTED_DRIVERS)} "
                               f"(it names {parsed.drivername!r})")
    if unknown := _unknown_options(parsed):
        raise DatabaseUrlError(f"DATABASE_URL has option(s) the database driver does not take: {', '.join(unknown)} "
                               "(for TLS with PostgreSQL write ?ssl=require, not sslmode)")
    return url


def _unknown_options(url: URL) -> list[str]:
    """Query options asyncpg would reject with a TypeError at the first connection (names only)."""
    if url.drivername != "postgresql+asyncpg":
        return []
    import asyncpg

    known = set(inspect.signature(asyncpg.connect).parameters) | {"prepared_statement_cache_size"}
    return sorted(set(url.query) - known)
