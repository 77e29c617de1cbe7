"""`consentbot staff import`: many people added or updated from a CSV file, all or nothing.

Columns: email, name, role (required), and school, slack_id, teams_id (optional). Every row is
checked before anything is written, and the changes are made in one transaction, each logged
like a single `staff add` or `staff edit` (operator, fingerprint), so `audit verify` stays green.
A row that cannot be applied refuses the whole file, naming its line. Nobody is moved between
schools, no school is created, and a removed person is not brought back by a file (that is
`staff reactivate`). An empty slack_id or teams_id cell leaves a registered id as it is.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import people
from bot.cases import Services
from bot.errors import BotError
from bot.schools import InvalidSetting
from storage import repo
from storage.models import School, Staff

REQUIRED = ("email", "name", "role")
COLUMNS = (*REQUIRED, "school", "slack_id", "teams_id")
MAX_ROWS = 20_000


class ImportRefused(BotError):
    """The file cannot be imported: the message names the line and what is wrong. Nothing changed."""


@dataclass(frozen=True)
class Row:
    """One checked line of the file: the staff columns it sets."""

    line: int
    school: str
    values: dict[str, Any]

    @property
    def email(self) -> str:
        """The row's email (checked, lower case)."""
        return str(self.values["email"])


@dataclass
class ImportReport:
    """What an import changed (or, on a dry run, would change)."""

    dry_run: bool
    added: list[str] = field(default_factory=list)
    updated: list[tuple[str, list[str]]] = field(default_factory=list)  # (email, changed columns)
    unchanged: int = 0


def parse_rows(text: str, *, school: str | None) -> list[Row]:
    """The checked rows of a CSV text; ImportRefused naming the first bad line."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = [(name or "").strip().lower() for name in reader.fieldnames or ()]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing or unknown:
        raise ImportRefused(f"line 1: the header must name the columns {', '.join(REQUIRED)} (and optionally "
                            f"school, slack_id, teams_id); {_header_problem(missing, unknown)}")
    reader.fieldnames = header
    rows: list[Row] = []
    seen: dict[str, int] = {}
    for cells in reader:
        if len(rows) >= MAX_ROWS:
            raise ImportRefused(f"line {reader.line_num}: more than {MAX_ROWS} rows: split the file")
        if None in cells:
            raise ImportRefused(f"line {reader.line_num}: more cells than the header has columns")
        row = _row(reader.line_num, cells, school)
        if row.email in seen:
            raise ImportRefused(f"line {row.line}: {row.email} is on line {seen[row.email]} too")
        seen[row.email] = row.line
        rows.append(row)
    return rows


def _header_problem(missing: list[str], unknown: list[str]) -> str:
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(unknown)}"] if unknown else [])
    return "; ".join(parts)


def _row(line: int, cells: dict[str, str | None], school: str | None) -> Row:
    cell = {k: (v or "").strip() for k, v in cells.items()}
    home = cell.get("school") or school
    if not home:
        raise ImportRefused(f"line {line}: no school: fill the school column, or give --school")
    try:
        values: dict[str, Any] = {"email": people.check_email(cell["email"]),
                                  "display_name": people.check_name(cell["name"]),
                                  "role": people.check_role(cell["role"])}
        if cell.get("slack_id"):
            values["slack_user_id"] = people.check_slack_id(cell["slack_id"])
        if cell.get("teams_id"):
            values["teams_user_id"] = people.check_teams_id(cell["teams_id"])
    except InvalidSetting as exc:
        raise ImportRefused(f"line {line}: {exc}") from None
    return Row(line=line, school=home, values=values)


async def import_staff(svc: Services, *, rows: Sequence[Row], dry_run: bool = False,
                       by: people.Operator | None = None) -> ImportReport:
    """Add or update every row in one transaction (a dry run reads only). ImportRefused, naming
    the line, for an unknown school, someone registered at another school or removed, or an id
    that is someone else's; then nothing is written.
    """
    report = ImportReport(dry_run=dry_run)
    opened = svc.db.read() if dry_run else svc.db.transaction()
    try:
        async with opened as s:
            plan = _Plan(await _schools(s, rows), await repo.list_staff(s, include_inactive=True))
            for row in rows:
                await plan.apply(svc, s, row, report, by=by, write=not dry_run)
    except IntegrityError:  # checked above; a concurrent change can still collide
        raise ImportRefused("someone registered one of these emails or ids meanwhile: nothing was changed; "
                            "run the import again") from None
    return report


async def _schools(s: AsyncSession, rows: Sequence[Row]) -> dict[str, School]:
    found: dict[str, School] = {}
    for row in rows:
        if row.school in found:
            continue
        school = await repo.get_school(s, row.school)
        if school is None:
            hint = await people.close_school(s, row.school)
            known = ", ".join(k.slug for k in await repo.list_schools(s)) or "none yet"
            raise ImportRefused(f"line {row.line}: no school {row.school!r}.{hint} Known schools: {known}. "
                                "(`consentbot staff add --create-school` makes a new one.)")
        found[row.school] = school
    return found


class _Plan:
    """Matches rows to staff rows by email and checks that ids stay one person's."""

    def __init__(self, schools: dict[str, School], staff: Sequence[Staff]) -> None:
        self.schools = schools
        self.by_email = {r.email: r for r in staff}
        self.owner = {(c, getattr(r, c)): r.email for r in staff for c in ("slack_user_id", "teams_user_id")
                      if getattr(r, c)}

    async def apply(self, svc: Services, s: AsyncSession, row: Row, report: ImportReport, *,
                    by: people.Operator | None, write: bool) -> None:
        school = self.schools[row.school]
        current = self.by_email.get(row.email)
        self._check(row, current, school)
        if current is None:
            report.added.append(row.email)
            if write:
                await self._add(svc, s, row, school, by)
            return
        changed = sorted(k for k, v in row.values.items() if getattr(current, k) != v)
        if not changed:
            report.unchanged += 1
            return
        report.updated.append((row.email, changed))
        if write:
            people.apply(current, row.values)
            await people.log_change(svc, s, current, "staff_edited", by, fields=changed, source="import")

    def _check(self, row: Row, current: Staff | None, school: School) -> None:
        if current is not None and current.school_id != school.id:
            raise ImportRefused(f"line {row.line}: {row.email} is registered at another school (people are not "
                                "moved between schools)")
        if current is not None and not current.active:
            raise ImportRefused(f"line {row.line}: {row.email} was removed: `consentbot staff reactivate "
                                f"{row.email}` first, or leave them out of the file")
        for column in ("slack_user_id", "teams_user_id"):
            value = row.values.get(column)
            owner = self.owner.get((column, value)) if value else None
            if owner is not None and owner != row.email:
                label = "Slack id" if column == "slack_user_id" else "Teams id"
                raise ImportRefused(f"line {row.line}: the {label} {value} belongs to {owner}")
            if value:
                self.owner[(column, value)] = row.email

    async def _add(self, svc: Services, s: AsyncSession, row: Row, school: School,
                   by: people.Operator | None) -> None:
        staff = Staff(school_id=school.id or 0, **row.values)
        s.add(staff)
        await people.log_change(svc, s, staff, "staff_added", by, role=staff.role, source="import")
