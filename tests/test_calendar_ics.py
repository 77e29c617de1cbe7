"""Term dates and closures from an .ics file, read with icalendar and expanded with
recurring-ical-events: recurrence (RRULE, RDATE, EXDATE), DURATION and time zones."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from bot.calendar_ics import parse_calendar_ics

ICS_LINES = [
    "BEGIN:VCALENDAR",
    "VERSION:2.0",
    "PRODID:-//School//Calendar//EN",
    "BEGIN:VEVENT",
    "UID:1",
    "SUMMARY:Autumn Term",
    "DTSTART;VALUE=DATE:20260902",
    "DTEND;VALUE=DATE:20261219",
    "END:VEVENT",
    "BEGIN:VEVENT",
    "SUMMARY:Autumn half ",  # folded: the summary is "Autumn half term"
    " term",
    "DTSTART;VALUE=DATE:20261026",
    "DTEND;VALUE=DATE:20261031",
    "BEGIN:VALARM",
    "SUMMARY:Spring term reminder",  # belongs to the alarm, not the event
    "TRIGGER:-PT15M",
    "END:VALARM",
    "END:VEVENT",
    "BEGIN:VEVENT",
    'DTSTART;TZID="Europe/London":20261127T090000',  # quoted ':'-free TZID, date-time
    "DTEND;TZID=Europe/London:20261127T153000",
    "SUMMARY:INSET day: determination of targets",
    "END:VEVENT",
    "BEGIN:VEVENT",
    "SUMMARY:Staff training",
    "DTSTART:20261130T000000Z",
    "DTEND:20261202T000000Z",  # midnight end is exclusive
    "END:VEVENT",
    "BEGIN:VEVENT",
    "SUMMARY:Strike day",
    "DTSTART;VALUE=DATE:20261203",  # no DTEND: one day
    "END:VEVENT",
    "END:VCALENDAR",
    "",
]
ICS_OK = "\r\n".join(ICS_LINES)


def ics(*events: list[str]) -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//School//Calendar//EN"]
    for i, event in enumerate(events):
        lines += ["BEGIN:VEVENT", f"UID:e{i}", "DTSTAMP:20260101T000000Z", *event, "END:VEVENT"]
    return "\r\n".join([*lines, "END:VCALENDAR", ""])


def test_terms_half_terms_alarms_and_exclusive_ends() -> None:
    terms, closures = parse_calendar_ics(ICS_OK)
    assert terms == [(date(2026, 9, 2), date(2026, 12, 18))]
    assert closures == [
        (date(2026, 10, 26), date(2026, 10, 30)),  # "half term" is a closure; the alarm's summary is not the event's
        (date(2026, 11, 27), date(2026, 11, 27)),  # "determination" is not a term
        (date(2026, 11, 30), date(2026, 12, 1)),  # a midnight end is exclusive
        (date(2026, 12, 3), date(2026, 12, 3)),  # no DTEND: one day
    ]


def test_bare_newlines_and_tab_folds() -> None:
    text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:Spring \n\tterm\nDTSTART;VALUE=DATE:20270104\n"
    text += "DTEND;VALUE=DATE:20270327\nEND:VEVENT\nEND:VCALENDAR\n"
    assert parse_calendar_ics(text) == ([(date(2027, 1, 4), date(2027, 3, 26))], [])


def test_a_weekly_rule_with_an_exception_is_every_occurrence_but_the_excluded_one() -> None:
    text = ics(["SUMMARY:Swimming gala (closed)", "DTSTART;VALUE=DATE:20270105", "RRULE:FREQ=WEEKLY;COUNT=4",
                "EXDATE;VALUE=DATE:20270112"])
    assert parse_calendar_ics(text) == ([], [(date(2027, 1, 5), date(2027, 1, 5)), (date(2027, 1, 19), date(2027, 1, 19)),
                                             (date(2027, 1, 26), date(2027, 1, 26))])


def test_rdate_and_duration() -> None:
    text = ics(["SUMMARY:INSET", "DTSTART;VALUE=DATE:20270301", "DURATION:P2D", "RDATE;VALUE=DATE:20270601"])
    assert parse_calendar_ics(text)[1] == [(date(2027, 3, 1), date(2027, 3, 2)), (date(2027, 6, 1), date(2027, 6, 2))]


def test_times_are_placed_on_the_schools_own_dates() -> None:
    late_utc = ics(["SUMMARY:Closed for the election", "DTSTART:20260601T233000Z", "DTEND:20260602T220000Z"])
    assert parse_calendar_ics(late_utc)[1] == [(date(2026, 6, 2), date(2026, 6, 2))]  # 00:30-23:00 BST
    new_york = ics(["SUMMARY:Trip", "DTSTART;TZID=America/New_York:20260601T200000",
                    "DTEND;TZID=America/New_York:20260601T210000"])
    assert parse_calendar_ics(new_york)[1] == [(date(2026, 6, 2), date(2026, 6, 2))]  # 01:00-02:00 in London
    assert parse_calendar_ics(new_york, ZoneInfo("America/New_York"))[1] == [(date(2026, 6, 1), date(2026, 6, 1))]


def test_a_rule_without_an_end_is_expanded_a_few_years_not_forever() -> None:
    closures = parse_calendar_ics(ics(["SUMMARY:Staff meeting day", "DTSTART;VALUE=DATE:20270104",
                                       "RRULE:FREQ=YEARLY"]))[1]
    assert closures[0] == (date(2027, 1, 4), date(2027, 1, 4)) and 3 <= len(closures) <= 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty calendar"),
        ("BEGIN:VEVENT\r\nEND:VEVENT", "expected BEGIN:VCALENDAR"),
        (ics(["SUMMARY:Closed"]), "event 'Closed' has no DTSTART"),
        (ics(["SUMMARY:Closed", "DTSTART;VALUE=DATE:20261301"]), "event 'Closed': bad date"),
        (ics(["SUMMARY:Closed", "DTSTART;VALUE=DATE:20260105", "DTEND;VALUE=DATE:20260105"]),
         "event 'Closed': DTEND is not after DTSTART"),
        (ics(["SUMMARY:Closed", "DTSTART;VALUE=DATE:20260105", "DTEND:20260106T000000"]),
         "event 'Closed': DTSTART and DTEND must both be"),
        ("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20260101\r\nEND:VCALENDAR", "not a valid iCalendar file"),
    ],
)
def test_errors_name_the_event(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_calendar_ics(text)
