"""A school's term dates and closures from an iCalendar (.ics) file, read with `icalendar` and
expanded with `recurring-ical-events` (RRULE, RDATE, EXDATE, DURATION and time zones, as
calendar programs write them), instead of a parser of our own.

SUMMARY with the word "term" (not "half term") is a term; any other event a closure. Every
occurrence becomes an inclusive range of the school's local dates: a time with a zone (or UTC)
is moved into the school's zone first, and an end at local midnight, or a date end (exclusive,
RFC 5545), ends the day before.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DateRange = tuple[date, date]
# "Half term" is a closure, and "determination" is not a term: match the word, not the letters.
_TERM_WORD = re.compile(r"\bterms?\b", re.IGNORECASE)
_HALF_TERM = re.compile(r"\bhalf[\s-]*term", re.IGNORECASE)
HORIZON = timedelta(days=3 * 366)  # a rule with no end is expanded this far past the last event's start
LONDON = ZoneInfo("Europe/London")


def parse_calendar_ics(text: str, zone: ZoneInfo = LONDON) -> tuple[list[DateRange], list[DateRange]]:
    """(terms, closures) as inclusive date ranges in `zone`. ValueError names the event that is wrong."""
    import recurring_ical_events  # with icalendar, ~90 ms and ~15 MiB: loaded by a calendar import, not by `serve`

    calendar = _calendar(text)
    events = list(calendar.walk("VEVENT"))
    for event in events:
        _check(event)
    found: dict[str, list[DateRange]] = {"term": [], "closure": []}
    if not events:
        return [], []
    first = min(_day(e.decoded("DTSTART"), zone) for e in events)
    last = max(_day(e.decoded("DTSTART"), zone) for e in events) + HORIZON
    # A day of slack each side: the library compares in its own zone, and the dates here are the school's.
    for occurrence in recurring_ical_events.of(calendar).between(first - timedelta(days=1), last + timedelta(days=1)):
        found[_kind(occurrence)].append(_span(occurrence, zone))
    return sorted(found["term"]), sorted(found["closure"])


def _calendar(text: str) -> Any:
    import icalendar

    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise ValueError("empty calendar: expected BEGIN:VCALENDAR")
    if not text.lstrip().upper().startswith("BEGIN:VCALENDAR"):
        raise ValueError("not an iCalendar file: expected BEGIN:VCALENDAR")
    try:
        return icalendar.Calendar.from_ical(text)
    except ValueError as exc:
        raise ValueError(f"not a valid iCalendar file ({exc})") from None


def _name(event: Any) -> str:
    summary, uid = str(event.get("SUMMARY", "")).strip(), str(event.get("UID", "")).strip()
    return f"event {summary or uid or '(no summary)'!r}"


def _check(event: Any) -> None:
    """Refuse what cannot be placed on dates: no start, a bad date, an end not after its start."""
    if "DTSTART" not in event:
        raise ValueError(f"{_name(event)} has no DTSTART")
    try:
        start = event.decoded("DTSTART")
        end = event.decoded("DTEND") if "DTEND" in event else None
    except (ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"{_name(event)}: bad date ({exc})") from None
    for key, value in (("DTSTART", start), ("DTEND", end)):
        if value is not None and not isinstance(value, date):  # icalendar leaves a broken value as its text
            raise ValueError(f"{_name(event)}: bad date in {key} {str(event.get(key))!r} "
                             "(expected YYYYMMDD or YYYYMMDDTHHMMSS)")
    if end is None:
        return
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise ValueError(f"{_name(event)}: DTSTART and DTEND must both be dates or date-times")
    if _comparable(end) <= _comparable(start):
        raise ValueError(f"{_name(event)}: DTEND is not after DTSTART")


def _comparable(value: date) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo is None else value.timestamp()
    return value


def _kind(event: Any) -> str:
    summary = str(event.get("SUMMARY", ""))
    return "term" if _TERM_WORD.search(summary) and not _HALF_TERM.search(summary) else "closure"


def _span(event: Any, zone: ZoneInfo) -> DateRange:
    start, end = event.start, event.end
    first = _day(start, zone)
    if not isinstance(end, datetime):  # a date end is exclusive
        return first, max(first, end - timedelta(days=1))
    local_end = _local(end, zone)
    last = local_end.date() - timedelta(days=1) if local_end.time() == datetime.min.time() else local_end.date()
    return first, max(first, last)


def _day(value: date, zone: ZoneInfo) -> date:
    return _local(value, zone).date() if isinstance(value, datetime) else value


def _local(value: datetime, zone: ZoneInfo) -> datetime:
    """A time in the school's zone; a floating time (no zone) is already the school's."""
    return value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone(zone).replace(tzinfo=None)
