"""Encryption is decided by field type in the policy: a distinct canary typed into every free-text
field (and a distinct date or time into every date field) of every step of every path through the
checklist, under each consent model, is found nowhere in the database's bytes: not in the SQLite
file, its -wal or its -shm, and not in a pg_dump of the PostgreSQL database. Nor in any log line.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import shutil
import subprocess
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bot import cases
from bot.cases import CaseView, Person, Services
from bot.checklist import Answer, advance
from bot.policy.model import Actor, FieldType, Policy, Step
from bot.policy.validate import SETTING_VALUES, enumerate_paths

FREE_TEXT = (FieldType.TEXT, FieldType.LONGTEXT)
FIRST_PAST_DAY = date(2003, 3, 1)  # far from any time the bot stamps itself (2026)


class Canaries:
    """A distinct value for each field typed: text that exists nowhere else, or a date or time."""

    def __init__(self) -> None:
        self.planted: list[str] = []
        self.counter = itertools.count(1)

    def value(self, step: Step, key: str, kind: FieldType, *, no_future: bool, reminds: bool) -> str:
        n = next(self.counter)
        if kind in FREE_TEXT:
            text = f"CANARY{n:04d}Q{key.upper()}Z"
        elif kind is FieldType.DATE:
            day = FIRST_PAST_DAY + timedelta(days=5 * n) if no_future else date(2031, 1, 1) + timedelta(days=n)
            text = day.isoformat()
            if reminds:  # its reminder row must say when it fires, so that day is in the reminders table
                return text
        else:  # a datetime: when something happened, in the school's time (an odd offset, so it is distinct)
            when = datetime(2004, 1, 1, 6, 7, tzinfo=timezone(timedelta(hours=1))) + timedelta(days=3 * n, minutes=n)
            text = when.isoformat()
        self.planted.append(text)
        return text


def step_sequences(policy: Policy) -> list[tuple[str, list[Answer]]]:
    """One walk (model, answers) per distinct sequence of steps: every path through the checklist."""
    seen: dict[tuple[str, ...], tuple[str, list[Answer]]] = {}
    for model in SETTING_VALUES["consent_model"]:
        variant = dataclasses.replace(policy, settings={**policy.settings, "consent_model": model})
        for answers, _ in enumerate_paths(variant):
            seen.setdefault(tuple(a.step for a in answers), (model, answers))
    return list(seen.values())


def planted_values(step: Step, sampled: dict[str, Any], canaries: Canaries, assignee: str) -> dict[str, Any]:
    """The sampled answer (it decides the route), with every free-text and date field filled, optional ones too."""
    values = {k: v for k, v in sampled.items() if not isinstance(v, str) or v != "recorded"}
    for f in step.fields:
        if f.type in (*FREE_TEXT, FieldType.DATE, FieldType.DATETIME):
            values[f.key] = canaries.value(step, f.key, f.type, no_future=f.no_future, reminds=f.reminds)
        elif f.type is FieldType.ASSIGNEE:
            values[f.key] = assignee
        elif f.type is FieldType.DUE:
            values.pop(f.key, None)  # the policy's due time
    return values


async def walk(svc: Services, school: dict[str, Person], policy: Policy, answers: list[Answer],
               canaries: Canaries) -> CaseView:
    """Drive one path through the use cases, as the people it names."""
    svc.policy = policy
    teacher, dsl = school["teacher"], school["dsl"]
    view: CaseView | None = None
    for i, sampled in enumerate(answers):
        step = policy.steps[sampled.step]
        progress = advance(policy, answers[:i])
        assert progress.step is not None and progress.step.id == step.id
        values = planted_values(step, dict(sampled.values), canaries, teacher.email)
        if view is None:
            view = await cases.raise_concern(svc, actor=teacher, values=values, platform="test")
            continue
        who = dsl if step.actor is Actor.DSL else teacher
        view = await cases.answer(svc, actor=who, case_ref=view.ref, version=view.version, step=step.id,
                                  values=values, platform="test")
    assert view is not None and view.outcome is not None
    return view


def database_bytes(db_url: str) -> bytes:
    """Everything the database holds, as bytes: the SQLite files, or a pg_dump of the PostgreSQL database."""
    if db_url.startswith("sqlite"):
        path = Path(db_url.split("///", 1)[1])
        files = [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm")]
        assert files[0].exists()
        return b"".join(f.read_bytes() for f in files if f.exists())
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump is not installed, so the PostgreSQL database cannot be checked"
    url = urlsplit(db_url.replace("postgresql+asyncpg://", "postgresql://"))
    env = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
    done = subprocess.run([pg_dump, "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432),  # noqa: S603
                           "-U", url.username or "postgres", "-d", url.path.lstrip("/")],
                          capture_output=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


async def test_no_canary_from_any_field_of_any_path_reaches_the_database_or_the_logs(
        services: Services, school: dict[str, Person], db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    policy, canaries = services.policy, Canaries()
    walks = step_sequences(policy)
    assert len(walks) >= 20  # every outcome, with and without asking, under seek, inform and the DSL's choice
    asked = set()
    for model, answers in walks:
        variant = dataclasses.replace(policy, settings={**policy.settings, "consent_model": model})
        await walk(services, school, variant, answers, canaries)
        asked |= {a.step for a in answers}
    typed = {f.key for s in policy.steps.values() if s.id in asked for f in s.fields
             if f.type in (*FREE_TEXT, FieldType.DATE, FieldType.DATETIME)}
    assert {"child", "concern", "seen_at", "child_dob", "consulted", "agency_ref", "asked_at", "shared_at",
            "ack_received", "child_views", "reasons_text", "parent_views"} <= typed  # every kind was planted
    stored = database_bytes(db_url)
    assert len(stored) > 10_000  # the database was read, not an empty file
    found = [c for c in canaries.planted if c.encode() in stored]
    assert found == [], f"stored in plaintext: {found[:5]} ({len(found)} of {len(canaries.planted)})"
    logged = [c for c in canaries.planted if c in caplog.text]
    assert logged == []


async def test_the_canary_check_would_see_a_plaintext_value(services: Services, school: dict[str, Person],
                                                            db_url: str) -> None:
    """The check can fail: a field the policy does not encrypt (a choice) is in the bytes as typed."""
    view = await cases.raise_concern(services, actor=school["teacher"], values={"immediate_danger": "no"},
                                     platform="test")
    assert view.ref.encode() in database_bytes(db_url)
