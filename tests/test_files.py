"""Files private from birth (issue 8, defect 8): the development key file, exports and the
SQLite database with its -wal and -shm are created 0600, never created wider and narrowed
after; CSV cells a spreadsheet would run as formulas are written as text."""

from __future__ import annotations

import asyncio
import csv
import logging
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot import cases, people
from bot.cases import Services
from bot.cli_commands import export
from bot.crypto import Keyring, generate_key, load_keyring
from storage.db import create_database
from storage.migrate import upgrade
from tests.conftest import england

FORMULAS = {"child": "=HYPERLINK(\"http://evil.example\",\"open\")", "concern": "+cmd|' /C calc'!A0"}


class FileEvents:
    """Files opened or chmod-ed under one directory, from Python's audit events. A hook cannot be
    removed, so one is installed for the session and pointed at a directory while a test records."""

    def __init__(self) -> None:
        self.directory: str | None = None
        self.opened: list[tuple[str, int]] = []  # (path, open flags)
        self.chmodded: list[str] = []

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if self.directory is None or event not in ("open", "os.chmod") or not isinstance(args[0], str | Path):
            return
        path = os.path.abspath(os.fspath(args[0]))
        if path.startswith(self.directory):
            (self.opened.append((path, args[2])) if event == "open" else self.chmodded.append(path))


EVENTS = FileEvents()
sys.addaudithook(EVENTS)


@pytest.fixture
def private_umask(tmp_path: Path) -> Iterator[FileEvents]:
    """Record file events under tmp_path with umask 0: a file is private only if it was created so."""
    EVENTS.directory, EVENTS.opened, EVENTS.chmodded = str(tmp_path), [], []
    old = os.umask(0)
    try:
        yield EVENTS
    finally:
        os.umask(old)
        EVENTS.directory = None


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def created_exclusively(events: FileEvents, path: Path) -> bool:
    """Every write-open of `path` (or of a partial file beside it) created a new file (O_EXCL)."""
    writes = [flags for p, flags in events.opened if Path(p).name.lstrip(".").startswith(path.name)
              and flags & (os.O_WRONLY | os.O_RDWR)]
    return bool(writes) and all(flags & os.O_CREAT and flags & os.O_EXCL for flags in writes)


def test_the_development_key_file_is_created_private(tmp_path: Path, private_umask: FileEvents) -> None:
    key_file = tmp_path / "consentbot.db.key"
    load_keyring(configured=None, production=False, dev_key_file=key_file, database_file=tmp_path / "consentbot.db")
    assert mode(key_file) == "0o600"
    assert private_umask.chmodded == [], "the key file was made private after it was written"
    assert created_exclusively(private_umask, key_file)


async def test_the_sqlite_database_and_its_wal_and_shm_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, under which SQLite alone would make them 0644
    try:
        db = create_database(f"sqlite+aiosqlite:///{tmp_path}/consentbot.db")
        await upgrade(db)
        files = {p.name: mode(p) for p in tmp_path.iterdir()}  # while open: -wal and -shm exist
        await db.dispose()
    finally:
        os.umask(old)
    assert files == {"consentbot.db": "0o600", "consentbot.db-wal": "0o600", "consentbot.db-shm": "0o600"}


@pytest.fixture
def exported_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A case whose typed answers look like spreadsheet formulas, and the CLI's environment for it."""
    key, url = generate_key("k1"), f"sqlite+aiosqlite:///{tmp_path}/consentbot.db"
    for name in [n for n in os.environ if n.startswith(("CONSENTBOT_", "SLACK_", "TEAMS_", "DATABASE_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("CONSENTBOT_ENCRYPTION_KEY", key)
    monkeypatch.chdir(tmp_path)
    # The command configures logging; a handler already there keeps it off this process's root logger.
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])
    return asyncio.run(_raise(url, key))


async def _raise(url: str, key: str) -> str:
    svc = Services(db=create_database(url), keyring=Keyring.parse(key), policy=england())
    await upgrade(svc.db)
    tina = await people.add(svc, email="tina@oak.sch.uk", role="staff", name="Tina", school="oak")
    view = await cases.raise_concern(svc, actor=tina, values={"immediate_danger": "no"}, platform="test")
    assert view.step is not None
    await cases.answer(svc, actor=tina, case_ref=view.ref, version=view.version, step=view.step.id,
                       values={**FORMULAS, "year_group": "year_4", "seen_at": "2026-11-24T09:10:00+00:00"}, platform="test")
    await svc.db.dispose()
    return view.ref


def test_an_export_is_created_private_and_its_formulas_are_inert(tmp_path: Path, exported_case: str,
                                                                private_umask: FileEvents) -> None:
    out = tmp_path / "record.csv"
    out.write_text("an older export, readable by all\n")
    os.chmod(out, 0o644)
    private_umask.opened, private_umask.chmodded = [], []
    export(exported_case, format="csv", as_=None, out=out)
    assert mode(out) == "0o600" and private_umask.chmodded == []
    assert created_exclusively(private_umask, out)
    rows = dict(csv.reader(out.read_text().splitlines()[1:]))
    assert {key: rows[key] for key in ("child", "concern")} == {k: "'" + v for k, v in FORMULAS.items()}
    assert not [cell for row in rows.items() for cell in row if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
