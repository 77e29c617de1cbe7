"""When a reminder may be sent on "school time": school days, working hours, DST-safe.

Pure: no I/O, no clock. Callers pass the due instant and get back an aware UTC instant.
Product rules this enforces: no schedule falls in 01:00-02:59 local time, and daylight-saving
changes neither skip nor duplicate a reminder (a result fed back in comes back unchanged).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DateRange = tuple[date, date]
SEARCH_DAYS = 400
# UK clocks change at 01:00 GMT (March, 01:00-01:59 never happens) and 02:00 BST (October,
# 01:00-01:59 happens twice), so this band holds every wall time that is missing or doubled.
QUIET_START, QUIET_END = time(1, 0), time(3, 0)
# The UK's subdivisions in `holidays` (a test checks them against holidays.list_supported_countries(),
# which imports every country's module: 300 modules and ~10 MiB that `serve` need never load).
NATIONS = frozenset({"ENG", "NIR", "SCT", "WLS"})


class NoSchoolDayError(ValueError):
    """No school day within SEARCH_DAYS of the due date (closures or terms cover them all)."""


@lru_cache(maxsize=64)
def _bank_holidays(nation: str, year: int) -> frozenset[date]:
    # Without subdiv, "GB" has only UK-wide days (no Easter Monday in England, no 2 January
    # in Scotland). Observed substitute days are included by default. country_holidays, not
    # holidays.UnitedKingdom: the classes are loaded lazily, so type checkers cannot see them.
    import holidays  # lazily: the first school-day question pays for it, not every start

    return frozenset(holidays.country_holidays("GB", subdiv=nation, years=year))


@dataclass(frozen=True)
class SchoolCalendar:
    """A school's open days and working hours, in its own timezone and UK nation."""

    timezone: str = "Europe/London"
    nation: str = "ENG"
    working_start: time = time(8, 0)
    working_end: time = time(17, 0)
    closures: tuple[DateRange, ...] = ()
    terms: tuple[DateRange, ...] = ()

    def __post_init__(self) -> None:
        """Reject a calendar that could schedule a missing, doubled or quiet-hours time."""
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {self.timezone!r}") from exc
        if self.nation not in NATIONS:
            raise ValueError(f"nation must be one of {sorted(NATIONS)}, not {self.nation!r}")
        _check_working_hours(self.working_start, self.working_end)
        # The parsers return lists; freeze them so the calendar stays hashable and immutable.
        object.__setattr__(self, "closures", tuple(tuple(span) for span in self.closures))
        object.__setattr__(self, "terms", tuple(tuple(span) for span in self.terms))
        for start, end in (*self.closures, *self.terms):
            if end < start:
                raise ValueError(f"date range ends {end} before it starts {start}")

    @property
    def zone(self) -> ZoneInfo:
        """The school's timezone (ZoneInfo caches instances, so this is cheap)."""
        return ZoneInfo(self.timezone)

    def is_school_day(self, day: date) -> bool:
        """Weekday, not a bank holiday in the nation, not closed, inside a term if terms set."""
        if day.weekday() >= 5 or day in _bank_holidays(self.nation, day.year):
            return False
        if any(start <= day <= end for start, end in self.closures):
            return False
        return not self.terms or any(start <= day <= end for start, end in self.terms)

    def next_send_time(self, due: datetime, *, urgent: bool = False) -> datetime:
        """Return the aware UTC instant to send a reminder due at aware `due`.

        Urgent: `due` itself. Routine: the earliest instant >= `due` on a school day within
        [working_start, working_end) local time. Idempotent on its own results.
        Raises NoSchoolDayError when no school day lies within SEARCH_DAYS.
        """
        if due.tzinfo is None or due.utcoffset() is None:
            raise ValueError("due must be timezone-aware")
        if urgent:
            return due.astimezone(UTC)
        local = due.astimezone(self.zone)
        in_hours = self.working_start <= local.time() < self.working_end
        if in_hours and self.is_school_day(local.date()):
            return due.astimezone(UTC)
        first = local.date() if local.time() < self.working_start else local.date() + timedelta(1)
        return self._opening(self._first_school_day(first))

    def _first_school_day(self, first: date) -> date:
        for offset in range(SEARCH_DAYS):
            day = first + timedelta(offset)
            if self.is_school_day(day):
                return day
        raise NoSchoolDayError(f"no school day in the {SEARCH_DAYS} days from {first}")

    def _opening(self, day: date) -> datetime:
        # Guard for zones other than the UK's, whose transitions may fall outside the quiet
        # band: a missing or doubled opening time would skip or duplicate a reminder.
        local = datetime.combine(day, self.working_start, tzinfo=self.zone)
        instant = local.astimezone(UTC)
        if instant.astimezone(self.zone).replace(tzinfo=None) != local.replace(tzinfo=None):
            raise ValueError(f"{local:%Y-%m-%d %H:%M} does not exist in {self.timezone}")
        if local.utcoffset() != local.replace(fold=1).utcoffset():
            raise ValueError(f"{local:%Y-%m-%d %H:%M} is ambiguous in {self.timezone}")
        return instant


def _check_working_hours(start: time, end: time) -> None:
    if start.tzinfo is not None or end.tzinfo is not None:
        raise ValueError("working hours are local wall-clock times: give them without tzinfo")
    if start >= end:
        raise ValueError(f"working_start {start} must be before working_end {end}")
    # Any instant in the window may be returned, so the whole window must avoid the band.
    if start < QUIET_END and end > QUIET_START:
        raise ValueError(f"working hours {start}-{end} overlap quiet hours 01:00-02:59")


def parse_calendar_csv(text: str) -> tuple[list[DateRange], list[DateRange]]:
    """Read `kind,start,end[,label]` rows (kind `term` or `closure`, ISO dates, inclusive).

    Returns (terms, closures). Raises ValueError naming the line for any bad row.
    """
    # Spreadsheets often save UTF-8 with a byte-order mark, which would spoil the header.
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    header = [cell.strip().lower() for cell in next(reader, [])]
    if header not in (["kind", "start", "end"], ["kind", "start", "end", "label"]):
        raise ValueError("line 1: header must be kind,start,end[,label]")
    found: dict[str, list[DateRange]] = {"term": [], "closure": []}
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                kind, span = _parse_csv_row(row, reader.line_num)
                found[kind].append(span)
    except csv.Error as exc:  # not a ValueError subclass, so callers would miss it
        raise ValueError(f"line {reader.line_num}: {exc}") from None
    return found["term"], found["closure"]


def _parse_csv_row(row: list[str], line: int) -> tuple[str, DateRange]:
    if not 3 <= len(row) <= 4:
        raise ValueError(f"line {line}: expected kind,start,end[,label], got {len(row)} columns")
    kind = row[0].strip().lower()
    if kind not in ("term", "closure"):
        raise ValueError(f"line {line}: unknown kind {row[0]!r} (expected term or closure)")
    start = _parse_iso(row[1], "start", line)
    end = _parse_iso(row[2], "end", line)
    if end < start:
        raise ValueError(f"line {line}: end {end} is before start {start}")
    return kind, (start, end)


def _parse_iso(value: str, field: str, line: int) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"line {line}: bad {field} date {value!r} (expected YYYY-MM-DD)") from None
