"""School-time scheduling: working hours, bank holidays, closures, DST, calendar parsing."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.schooltime import (
    NoSchoolDayError,
    SchoolCalendar,
    parse_calendar_csv,
)

LONDON = ZoneInfo("Europe/London")
ENG = SchoolCalendar()
SCT = SchoolCalendar(nation="SCT")
HALF_TERM = SchoolCalendar(closures=((date(2026, 10, 26), date(2026, 10, 30)),))


def london(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=LONDON, fold=fold)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("calendar", "due", "expected"),
    [
        # Friday in BST: 16:30 is inside hours; 17:30 waits for Monday 08:00 BST.
        (ENG, london(2026, 6, 19, 16, 30), utc(2026, 6, 19, 15, 30)),
        (ENG, london(2026, 6, 19, 17, 30), utc(2026, 6, 22, 7, 0)),
        (ENG, london(2026, 6, 19, 17, 0), utc(2026, 6, 22, 7, 0)),  # end is exclusive
        (ENG, london(2026, 6, 19, 7, 59), utc(2026, 6, 19, 7, 0)),
        (ENG, london(2026, 6, 19, 8, 0), utc(2026, 6, 19, 7, 0)),
        # Friday in GMT.
        (ENG, london(2026, 2, 6, 17, 30), utc(2026, 2, 9, 8, 0)),
        # Early May bank holiday (Mon 4 May 2026) -> Tuesday 08:00 BST.
        (ENG, london(2026, 5, 1, 17, 30), utc(2026, 5, 5, 7, 0)),
        (ENG, london(2026, 5, 4, 10, 0), utc(2026, 5, 5, 7, 0)),
        # Christmas Fri 25, Boxing Day Sat 26 observed Mon 28 -> Tuesday 29 December.
        (ENG, london(2026, 12, 24, 18, 0), utc(2026, 12, 29, 8, 0)),
        # Half term 26-30 October 2026, clocks go back on Sunday 25th -> 08:00 GMT.
        (HALF_TERM, london(2026, 10, 23, 17, 30), utc(2026, 11, 2, 8, 0)),
        # A due time given in another zone is judged by the school's local clock.
        (ENG, datetime(2026, 6, 19, 12, 0, tzinfo=ZoneInfo("America/New_York")),
         utc(2026, 6, 22, 7, 0)),
    ],
)
def test_routine_reminders_wait_for_school_time(calendar, due, expected):
    sent = calendar.next_send_time(due)
    assert sent == expected
    assert sent.tzinfo is UTC


@pytest.mark.parametrize(
    ("calendar", "due", "expected"),
    [
        # Clocks go forward Sun 28 March 2027; Good Friday is the 26th. England also has
        # Easter Monday (29th) off, Scotland does not: Monday 08:00 BST is 07:00Z.
        (SCT, london(2027, 3, 27, 12, 0), utc(2027, 3, 29, 7, 0)),
        (ENG, london(2027, 3, 27, 12, 0), utc(2027, 3, 30, 7, 0)),
        (SCT, london(2027, 3, 28, 1, 30), utc(2027, 3, 29, 7, 0)),  # wall time that never happens
        (SCT, london(2027, 3, 28, 3, 0), utc(2027, 3, 29, 7, 0)),
        # Clocks go back Sun 25 October 2026: Monday 08:00 GMT is 08:00Z.
        (ENG, london(2026, 10, 24, 12, 0), utc(2026, 10, 26, 8, 0)),
        (ENG, london(2026, 10, 25, 1, 30, fold=0), utc(2026, 10, 26, 8, 0)),  # first 01:30 (BST)
        (ENG, london(2026, 10, 25, 1, 30, fold=1), utc(2026, 10, 26, 8, 0)),  # second 01:30 (GMT)
    ],
)
def test_weekend_reminders_across_clock_changes_land_monday_morning(calendar, due, expected):
    assert calendar.next_send_time(due) == expected


@pytest.mark.parametrize(
    "due",
    [
        london(2026, 10, 31, 22, 0),  # Saturday night, GMT
        london(2026, 6, 20, 22, 0),  # Saturday night, BST
        london(2026, 10, 25, 1, 30, fold=1),  # inside the repeated hour
    ],
)
def test_urgent_reminders_go_at_the_due_instant(due):
    sent = ENG.next_send_time(due, urgent=True)
    # Not `sent == due`: PEP 495 makes a fold=1 time unequal to every other zone's time.
    assert sent == due.astimezone(UTC)
    assert sent.timestamp() == due.timestamp()
    assert sent.tzinfo is UTC


def test_saturday_22_00_urgent_is_that_exact_utc_instant():
    assert ENG.next_send_time(london(2026, 6, 20, 22, 0), urgent=True) == utc(2026, 6, 20, 21, 0)


@pytest.mark.parametrize("urgent", [False, True])
def test_naive_due_is_rejected(urgent):
    with pytest.raises(ValueError, match="timezone-aware"):
        ENG.next_send_time(london(2026, 6, 19, 9, 0).replace(tzinfo=None), urgent=urgent)


@pytest.mark.parametrize(
    ("calendar", "day", "expected"),
    [
        (ENG, date(2026, 1, 2), True),  # Friday: not a bank holiday in England...
        (SCT, date(2026, 1, 2), False),  # ...but the 2 January holiday in Scotland
        (ENG, date(2026, 4, 6), False),  # Easter Monday, England
        (SCT, date(2026, 4, 6), True),  # not a bank holiday in Scotland
        (SCT, date(2026, 8, 3), False),  # Scottish summer bank holiday
        (ENG, date(2026, 8, 3), True),
        (SchoolCalendar(nation="NIR"), date(2026, 3, 17), False),  # St Patrick's Day
        (ENG, date(2026, 3, 17), True),
        (ENG, date(2026, 6, 20), False),  # Saturday
        (HALF_TERM, date(2026, 10, 26), False),
        (HALF_TERM, date(2026, 10, 30), False),  # closures are inclusive
        (HALF_TERM, date(2026, 11, 2), True),
    ],
)
def test_is_school_day(calendar, day, expected):
    assert calendar.is_school_day(day) is expected


def test_scotland_skips_2_january_england_does_not():
    due = london(2026, 1, 1, 10, 0)  # New Year's Day, holiday in both
    assert ENG.next_send_time(due) == utc(2026, 1, 2, 8, 0)
    assert SCT.next_send_time(due) == utc(2026, 1, 5, 8, 0)


def test_days_outside_every_term_are_closed():
    calendar = SchoolCalendar(
        terms=((date(2026, 9, 2), date(2026, 12, 18)), (date(2027, 1, 5), date(2027, 3, 26)))
    )
    assert not calendar.is_school_day(date(2026, 9, 1))
    assert calendar.is_school_day(date(2026, 9, 2))
    assert calendar.next_send_time(london(2026, 8, 20, 9, 0)) == utc(2026, 9, 2, 7, 0)
    assert calendar.next_send_time(london(2026, 12, 18, 17, 0)) == utc(2027, 1, 5, 8, 0)


def test_no_school_day_in_search_window_is_a_clear_error():
    calendar = SchoolCalendar(closures=((date(2026, 1, 1), date(2028, 12, 31)),))
    with pytest.raises(NoSchoolDayError, match="no school day in the 400 days"):
        calendar.next_send_time(london(2026, 6, 1, 9, 0))


def test_calendar_accepts_parser_lists_and_stays_hashable():
    calendar = SchoolCalendar(closures=[[date(2026, 10, 26), date(2026, 10, 30)]])
    assert calendar == HALF_TERM
    assert hash(calendar) == hash(HALF_TERM)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"working_start": time(1, 30)}, "overlap quiet hours"),
        ({"working_start": time(2, 59)}, "overlap quiet hours"),
        ({"working_start": time(0, 30), "working_end": time(1, 30)}, "overlap quiet hours"),
        ({"working_start": time(0, 0), "working_end": time(3, 0)}, "overlap quiet hours"),
        ({"working_start": time(9, 0), "working_end": time(9, 0)}, "must be before"),
        ({"working_start": time(17, 0), "working_end": time(8, 0)}, "must be before"),
        ({"working_start": time(8, 0, tzinfo=UTC)}, "without tzinfo"),
        ({"nation": "GB"}, "nation must be one of"),
        ({"timezone": "Europe/Atlantis"}, "unknown timezone"),
        ({"closures": ((date(2026, 5, 2), date(2026, 5, 1)),)}, "before it starts"),
        ({"terms": ((date(2026, 5, 2), date(2026, 5, 1)),)}, "before it starts"),
    ],
)
def test_bad_calendars_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SchoolCalendar(**kwargs)


@pytest.mark.parametrize(
    ("start", "end"), [(time(0, 0), time(1, 0)), (time(3, 0), time(23, 59))]
)
def test_windows_just_outside_quiet_hours_are_allowed(start, end):
    calendar = SchoolCalendar(working_start=start, working_end=end)
    opening = datetime.combine(date(2026, 11, 24), start, tzinfo=LONDON)  # a Tuesday in term
    assert calendar.next_send_time(opening) == opening.astimezone(UTC)


@pytest.mark.parametrize(
    ("start", "end", "due", "message"),
    [
        # Egypt's clocks change at midnight on a Friday (a school day here), outside the
        # UK quiet band: refuse rather than skip or double the opening.
        (time(0, 0), time(0, 59), (2026, 4, 23, 12, 0), "2026-04-24 00:00 does not exist"),
        (time(23, 30), time(23, 59), (2026, 10, 29, 12, 0), "2026-10-29 23:30 is ambiguous"),
    ],
)
def test_openings_in_a_non_uk_dst_transition_are_refused(start, end, due, message):
    calendar = SchoolCalendar(timezone="Africa/Cairo", working_start=start, working_end=end)
    with pytest.raises(ValueError, match=message):
        calendar.next_send_time(datetime(*due, tzinfo=ZoneInfo("Africa/Cairo")))


CALENDARS = [
    ENG,
    SCT,
    SchoolCalendar(nation="NIR", working_start=time(3, 0), working_end=time(23, 30)),
    SchoolCalendar(nation="WLS", working_start=time(0, 0), working_end=time(1, 0)),
    SchoolCalendar(
        closures=((date(2026, 10, 26), date(2026, 10, 30)), (date(2027, 2, 15), date(2027, 2, 19))),
        terms=tuple((date(year, 9, 2), date(year + 1, 7, 21)) for year in range(2025, 2030)),
    ),
]
ZONES = [LONDON, UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")]
# Hypothesis takes naive bounds (wall times in each generated zone) and skips imaginary ones.
DUE = st.datetimes(
    min_value=utc(2026, 1, 1).replace(tzinfo=None),
    max_value=utc(2028, 12, 31, 23, 59).replace(tzinfo=None),
    timezones=st.sampled_from(ZONES),
    allow_imaginary=False,
)


@settings(max_examples=500, deadline=None)
@given(calendar=st.sampled_from(CALENDARS), due=DUE)
def test_routine_results_are_always_school_time(calendar, due):
    sent = calendar.next_send_time(due)
    local = sent.astimezone(calendar.zone)
    assert sent.tzinfo is UTC
    assert sent >= due
    assert calendar.is_school_day(local.date())
    assert calendar.working_start <= local.time() < calendar.working_end
    assert not time(1, 0) <= local.time() < time(3, 0)
    # Idempotent: a result fed back in is neither moved (skipped) nor sent twice.
    assert calendar.next_send_time(sent) == sent
    assert calendar.next_send_time(sent.astimezone(calendar.zone)) == sent


@settings(max_examples=200, deadline=None)
@given(due=DUE)
def test_routine_result_is_the_earliest_school_time_instant(due):
    # Walk forward minute by minute from the due time: nothing earlier may qualify.
    sent = ENG.next_send_time(due)
    probe = due.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    while probe < sent and probe < due + timedelta(days=1):
        local = probe.astimezone(LONDON)
        assert not (
            ENG.is_school_day(local.date()) and ENG.working_start <= local.time() < ENG.working_end
        )
        probe += timedelta(minutes=1)


CSV_OK = """\ufeffkind,start,end,label
term,2026-09-02,2026-12-18,Autumn term
closure,2026-10-26,2026-10-30,"Half term, autumn"

Closure , 2026-11-27 , 2026-11-27
"""


def test_parse_calendar_csv():
    terms, closures = parse_calendar_csv(CSV_OK)
    assert terms == [(date(2026, 9, 2), date(2026, 12, 18))]
    assert closures == [
        (date(2026, 10, 26), date(2026, 10, 30)),
        (date(2026, 11, 27), date(2026, 11, 27)),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: header must be kind,start,end"),
        ("type,from,to\n", "line 1: header must be kind,start,end"),
        ("kind,start,end\nholiday,2026-01-01,2026-01-02\n", "line 2: unknown kind 'holiday'"),
        ("kind,start,end\nterm,2026-13-01,2026-12-02\n", "line 2: bad start date '2026-13-01'"),
        ("kind,start,end\n\nterm,2026-01-01,01/02/2026\n", "line 3: bad end date '01/02/2026'"),
        ("kind,start,end\nterm,2026-02-01,2026-01-01\n", "line 2: end 2026-01-01 is before start"),
        ("kind,start,end\nterm,2026-02-01\n", "line 2: expected kind,start,end"),
        ("kind,start,end\nterm,2026-02-01,2026-02-02,x,y\n", "got 5 columns"),
        # A quoted label spanning two lines still leaves later line numbers right.
        ('kind,start,end,label\nterm,2026-01-01,2026-01-02,"a\nb"\nx,1,2\n', "line 4: unknown"),
    ],
)
def test_parse_calendar_csv_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_calendar_csv(text)


def test_the_nations_are_the_uk_subdivisions_holidays_knows() -> None:
    import holidays

    from bot.schooltime import NATIONS

    assert frozenset(holidays.list_supported_countries()["GB"]) == NATIONS
