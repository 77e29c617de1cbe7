"""SQLModel tables. Case events and the access log are append-only and hash-chained;
the `cases` row is a projection of its events that `audit verify` re-derives and checks.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import configure_mappers
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, returns aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Refuse naive datetimes; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None) if dialect.name == "sqlite" else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Return aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def _when(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


class School(SQLModel, table=True):
    """A school: the boundary nothing crosses."""

    __tablename__ = "schools"
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(unique=True, max_length=64)
    name: str = Field(max_length=200)
    nation: str = Field(default="ENG", max_length=3)
    timezone: str = Field(default="Europe/London", max_length=64)
    created_at: datetime = _when(default_factory=utcnow)
    # Per-school settings (`consentbot school set`): fallback contacts shown when no DSL or
    # deputy can be reached through the bot, the named escalation contact, the digest time.
    dsl_phone: str | None = Field(default=None, max_length=40)
    front_door_phone: str | None = Field(default=None, max_length=40)
    escalation_staff_id: int | None = Field(default=None)
    digest_time: str | None = Field(default=None, max_length=5)  # HH:MM local; None: CONSENTBOT_DIGEST_TIME
    chat_platform: str | None = Field(default=None, max_length=16)  # slack | teams, for people on both


class Staff(SQLModel, table=True):
    """A person and their role; platform ids map chat users onto them."""

    __tablename__ = "staff"
    __table_args__ = (sa.UniqueConstraint("email", name="uq_staff_email"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="schools.id", index=True)
    email: str = Field(max_length=254)
    display_name: str = Field(max_length=200)
    role: str = Field(max_length=16)  # staff | dsl | deputy | admin
    slack_user_id: str | None = Field(default=None, max_length=32, unique=True)
    teams_user_id: str | None = Field(default=None, max_length=64, unique=True)
    active: bool = True
    created_at: datetime = _when(default_factory=utcnow)


class Membership(SQLModel, table=True):
    """A member of staff's place at a school other than their home one (staff.school_id), with
    their role there: a trust's DSL who covers two schools, a deputy at one and a teacher at
    another. Everything a role allows is checked against the role in the case's own school.
    """

    __tablename__ = "memberships"
    __table_args__ = (sa.UniqueConstraint("staff_id", "school_id", name="uq_memberships_staff_school"),)
    id: int | None = Field(default=None, primary_key=True)
    staff_id: int = Field(foreign_key="staff.id", index=True)
    school_id: int = Field(foreign_key="schools.id", index=True)
    role: str = Field(max_length=16)  # staff | dsl | deputy | admin
    created_at: datetime = _when(default_factory=utcnow)


class Case(SQLModel, table=True):
    """One concern: identity, policy, and the projection of its events."""

    __tablename__ = "cases"
    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(unique=True, max_length=16)
    school_id: int = Field(foreign_key="schools.id", index=True)
    raised_by: int = Field(foreign_key="staff.id")
    policy_id: str = Field(max_length=64)
    policy_version: str = Field(max_length=32)
    created_at: datetime = _when(default_factory=utcnow)
    # The projection, re-derived from events by `audit verify`:
    step: str = Field(max_length=64)
    status: str = Field(max_length=24, index=True)
    urgent: bool = False
    assignee_id: int | None = Field(default=None, foreign_key="staff.id")
    due_at: datetime | None = _when(default=None)
    version: int = 0
    head_hash: str = Field(default="", max_length=64)
    updated_at: datetime = _when(default_factory=utcnow)
    # Identity, fixed when the case is raised (never moved on by events): the child it is about,
    # and the earlier case it was raised from (a re-escalation), if any.
    child_id: int | None = Field(default=None, foreign_key="children.id", index=True)
    linked_case_id: int | None = Field(default=None, foreign_key="cases.id", index=True)


class CaseEvent(SQLModel, table=True):
    """One appended, hash-chained change to a case."""

    __tablename__ = "case_events"
    __table_args__ = (sa.UniqueConstraint("case_id", "seq", name="uq_case_events_case_seq"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    seq: int
    kind: str = Field(max_length=32)
    actor_id: int | None = Field(default=None, foreign_key="staff.id")
    at: datetime = _when()
    payload: str  # canonical JSON; sensitive values are encrypted tokens
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    key_id: str | None = Field(default=None, max_length=64)  # whose audit key sealed it; None: legacy SHA-256


class AccessLog(SQLModel, table=True):
    """One appended, hash-chained view, export, refusal or staff change."""

    __tablename__ = "access_log"
    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(unique=True)
    at: datetime = _when()
    actor_id: int | None = Field(default=None, foreign_key="staff.id")
    school_id: int | None = Field(default=None, foreign_key="schools.id")
    case_id: int | None = Field(default=None, foreign_key="cases.id", index=True)
    action: str = Field(max_length=32)
    detail: str = "{}"  # canonical JSON of ids and codes only, never content
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    key_id: str | None = Field(default=None, max_length=64)  # whose audit key sealed it; None: legacy SHA-256


class Reminder(SQLModel, table=True):
    """A reminder due to one person; the truth the sweep works from."""

    __tablename__ = "reminders"
    __table_args__ = (sa.Index("ix_reminders_due", "status", "due_at"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    recipient_id: int | None = Field(default=None, foreign_key="staff.id")
    kind: str = Field(max_length=32)
    level: int = 0
    due_at: datetime = _when()
    unique_key: str = Field(unique=True, max_length=200)
    status: str = Field(default="pending", max_length=16)  # pending | claimed | sent | cancelled
    claimed_until: datetime | None = _when(default=None)
    sent_at: datetime | None = _when(default=None)
    created_at: datetime = _when(default_factory=utcnow)


class OutboxMessage(SQLModel, table=True):
    """A message to one person, queued in the transaction that caused it; sent later."""

    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_pending", "status", "next_attempt_at"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="schools.id")
    case_id: int | None = Field(default=None, foreign_key="cases.id", index=True)
    recipient_id: int = Field(foreign_key="staff.id")
    platform: str = Field(max_length=16)  # console | slack | teams
    kind: str = Field(max_length=32)
    payload: str  # JSON of a bot.messages message: references and verbs, never child details
    dedupe_key: str = Field(unique=True, max_length=200)
    status: str = Field(default="pending", max_length=16)  # pending | sending | sent | failed | cancelled
    attempts: int = 0
    next_attempt_at: datetime = _when(default_factory=utcnow)
    lease_until: datetime | None = _when(default=None)
    sent_ref: str | None = Field(default=None, max_length=600)  # platform message id (Slack channel:ts; Teams needs more)
    last_error: str | None = Field(default=None, max_length=200)
    created_at: datetime = _when(default_factory=utcnow)
    sent_at: datetime | None = _when(default=None)


class ChatAddress(SQLModel, table=True):
    """Where a platform reaches a person, as the platform wrote it down (a Teams conversation
    reference: service URL and conversation id). Opaque to the bot; no content.
    """

    __tablename__ = "chat_addresses"
    platform: str = Field(primary_key=True, max_length=16)
    user_id: str = Field(primary_key=True, max_length=64)
    address: str = Field(max_length=1000)
    updated_at: datetime = _when(default_factory=utcnow)


class ProcessedDelivery(SQLModel, table=True):
    """An idempotency key seen once: a replay changes nothing."""

    __tablename__ = "processed_deliveries"
    key: str = Field(primary_key=True, max_length=200)
    case_id: int | None = Field(default=None, foreign_key="cases.id")
    seen_at: datetime = _when(default_factory=utcnow)


class SchoolCalendarEntry(SQLModel, table=True):
    """A school's own term or closure dates (inclusive), imported by `consentbot calendar import`."""

    __tablename__ = "school_calendar"
    __table_args__ = (sa.Index("ix_school_calendar_school", "school_id", "kind"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="schools.id")
    kind: str = Field(max_length=16)  # term | closure
    start_date: date
    end_date: date
    imported_at: datetime = _when(default_factory=utcnow)


class DigestRun(SQLModel, table=True):
    """One digest built for one DSL for one school and period; 'closed since the last digest' reads these."""

    __tablename__ = "digest_runs"
    # Per school: a DSL of several schools (memberships) gets each school's digest.
    __table_args__ = (sa.UniqueConstraint("recipient_id", "school_id", "kind", "period", name="uq_digest_runs_period"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="schools.id")
    recipient_id: int = Field(foreign_key="staff.id")
    kind: str = Field(max_length=16)  # daily | weekly
    period: str = Field(max_length=16)  # ISO date (daily) or ISO week 2026-W10 (weekly)
    built_at: datetime = _when()


class KeyCheck(SQLModel, table=True):
    """A key check value: a fixed text encrypted under one key id, so that a key ring holding a
    different key under that id is refused at start-up instead of writing unreadable data.
    """

    __tablename__ = "key_checks"
    key_id: str = Field(primary_key=True, max_length=64)
    token: str = Field(max_length=200)
    created_at: datetime = _when(default_factory=utcnow)


class Child(SQLModel, table=True):
    """A child the school has raised concerns about: every case about them forms one chronology.
    The name and date of birth are encrypted; `name_index` is a keyed hash of the school and the
    normalised name (a blind index), so a later concern finds the child without decrypting every row.
    """

    __tablename__ = "children"
    __table_args__ = (sa.Index("ix_children_school_name", "school_id", "name_index"),)
    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(unique=True, max_length=16)
    school_id: int = Field(foreign_key="schools.id")
    name: str  # an encrypted token: no length cap, as the name typed may be as long as the form allows
    date_of_birth: str | None = Field(default=None)  # an encrypted token
    name_index: str = Field(max_length=64)
    index_key_id: str = Field(max_length=64)  # the key the blind index was made under
    created_at: datetime = _when(default_factory=utcnow)


class SlackInstallation(SQLModel, table=True):
    """A Slack workspace (or Enterprise Grid org) that installed the app through OAuth, and the
    school it serves once an administrator has linked it (`consentbot slack link`). One school is
    served by at most one workspace. The bot token is an encrypted token.
    """

    __tablename__ = "slack_installations"
    __table_args__ = (sa.UniqueConstraint("enterprise_id", "team_id", name="uq_slack_installations_workspace"),)
    id: int | None = Field(default=None, primary_key=True)
    # "" rather than NULL when absent, so that the unique constraint holds on every backend.
    enterprise_id: str = Field(default="", max_length=32)
    team_id: str = Field(default="", max_length=32)
    team_name: str = Field(default="", max_length=200)
    app_id: str = Field(default="", max_length=32)
    is_enterprise_install: bool = False
    bot_token: str  # an encrypted token
    bot_id: str = Field(default="", max_length=32)
    bot_user_id: str = Field(default="", max_length=32)
    bot_scopes: str = Field(default="", max_length=2000)  # comma-separated, as Slack grants them
    installed_at: datetime = _when(default_factory=utcnow)
    school_id: int | None = Field(default=None, foreign_key="schools.id", unique=True)


# The mappers are configured now, not at the first query: the hot path builds rows with
# model_construct and snapshots outside any session (storage/audit.py, storage/plain.py), and
# before configuration such an instance has no attributes to read: a process whose first act on
# the database was an append to the access log failed (as a test that did only that found).
configure_mappers()
