"""Builds the services from settings: database, key ring, policy."""

from __future__ import annotations

import inspect
import logging
import re
from pathlib import Path

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from bot.cases import Services
from bot.config import Settings
from bot.crypto import Keyring, load_keyring
from bot.policy.loader import DEFAULT_POLICY, load_policy
from storage.db import Database, create_database

# Libraries that would log SQL parameters or request bodies stay at WARNING whatever our level.
QUIET_LIBRARIES = ("aiosqlite", "sqlalchemy", "asyncpg", "alembic", "httpx", "httpcore", "slack_bolt", "slack_sdk",
                   "apscheduler", "uvicorn.access", "microsoft_teams", "msgraph", "kiota_http",
                   "kiota_abstractions", "azure", "msal")


def configure_logging(settings: Settings) -> None:
    """Log to stderr, as text or JSON (CONSENTBOT_LOG_FORMAT), each line with its request id. Log
    lines carry ids and references only, never content.
    """
    from bot.logs import handler

    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler(settings.log_format)])
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def dev_key_file(settings: Settings) -> Path | None:
    """Where a development key lives: beside the SQLite database."""
    path = settings.sqlite_path()
    return path.with_name(path.name + ".key") if path else None


class DatabaseUrlError(ValueError):
    """DATABASE_URL is not one consentbot can use. Never quotes the URL: it may hold a password."""


SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
DEV_KEY_ID = re.compile(r"dev[0-9a-f]{8}")  # bot.crypto.load_keyring names development keys so
UPGRADE = "consentbot db upgrade"


class ProductionRefused(ValueError):
    """CONSENTBOT_ENV=production with settings meant for development only."""


def build_services(settings: Settings, *, migrating: bool = False) -> Services:
    """Everything the use cases need, from the settings. `migrating` (`db upgrade`) lifts the
    statement timeout: a migration may rightly take longer than a request may.
    """
    # The key ring first: it must see whether the SQLite file existed before the engine makes it.
    keyring = load_keyring(configured=settings.encryption_key, production=settings.is_production,
                           dev_key_file=dev_key_file(settings), database_file=settings.sqlite_path())
    check_production(settings, keyring)
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


def check_production(settings: Settings, keyring: Keyring) -> None:
    """Refuse (ProductionRefused, one line) development-only settings in production: a development
    key as the active key, or a database that depends on the folder the command runs in.
    """
    if not settings.is_production:
        return
    if DEV_KEY_ID.fullmatch(keyring.active):
        raise ProductionRefused(
            f"production refuses the development key {keyring.active!r} as the active key: put a key from "
            "`consentbot keygen` first in CONSENTBOT_ENCRYPTION_KEY (keep the development key after it only "
            "while data written with it is still read)")
    if settings.database_url_is_default:
        raise ProductionRefused("production needs DATABASE_URL: it is not set, so the development SQLite file in "
                                "the current folder would be used (set a PostgreSQL URL, or SQLite with an absolute path)")
    path = settings.sqlite_path()
    if path is not None and not path.is_absolute():
        raise ProductionRefused("production needs an absolute SQLite path in DATABASE_URL (sqlite+aiosqlite:////PATH): "
                                "a relative one depends on the folder the command runs in")


async def schema_problem(db: Database) -> str | None:
    """Why the database's schema is not the one this version needs, with the command to run; None
    when it is current. Raises the driver's error when the database cannot be reached.
    """
    from storage.schema_version import current_revision, head_revision

    current, head = await current_revision(db), head_revision()
    if current == head:
        return None
    if current is None:
        return f"the database has no tables yet: run `{UPGRADE}`"
    from alembic.script import ScriptDirectory  # only for a schema that is not current
    from alembic.util import CommandError

    from storage.migrate import MIGRATIONS

    try:
        ScriptDirectory(str(MIGRATIONS)).get_revision(current)
    except CommandError:
        return (f"the database is at migration {current}, which this version of consentbot does not know "
                f"(it ends at {head}): run the newer consentbot, or check DATABASE_URL")
    return f"migrations pending (the database is at {current}, this version needs {head}): run `{UPGRADE}`"
