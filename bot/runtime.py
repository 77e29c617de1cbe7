"""Builds the services from settings: database, key ring, policy."""

from __future__ import annotations

import logging
from pathlib import Path

from bot.cases import Services
from bot.config import Settings
from bot.crypto import load_keyring
from bot.policy.loader import DEFAULT_POLICY, load_policy
from storage.db import create_database

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


# Libraries that would log SQL parameters or request bodies stay at WARNING whatever our level.
QUIET_LIBRARIES = ("aiosqlite", "sqlalchemy", "asyncpg", "alembic", "httpx", "httpcore", "slack_bolt", "slack_sdk",
                   "apscheduler", "uvicorn.access")


def configure_logging(settings: Settings) -> None:
    """Log to stderr. Log lines carry ids and references only, never content."""
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def dev_key_file(settings: Settings) -> Path | None:
    """Where a development key lives: beside the SQLite database."""
    path = settings.sqlite_path()
    return path.with_name(path.name + ".key") if path else None


def build_services(settings: Settings) -> Services:
    """Everything the use cases need, from the settings."""
    keyring = load_keyring(configured=settings.encryption_key, production=settings.is_production,
                           dev_key_file=dev_key_file(settings))
    policy = load_policy(Path(settings.policy) if settings.policy else DEFAULT_POLICY)
    return Services(db=create_database(settings.database_url), keyring=keyring, policy=policy,
                    delivering=settings.delivering_platforms())
