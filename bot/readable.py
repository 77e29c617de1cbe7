"""Values as people read them: times in the school's own timezone ("Mon 30 Nov 2026, 14:05"),
dates ("Tue 8 Dec 2026"), codes as the policy's labels, empty things as words. Pure: no I/O.

A record keeps a value a machine needs beside its words: a code as {"code", "label"}, a time or
a date as {"iso", "label"}. `words` reads any of them back as the text a person sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.policy.model import FieldType, Policy

DEFAULT_ZONE = "Europe/London"
PLATFORMS = {"slack": "Slack", "teams": "Microsoft Teams", "console": "Terminal", "cli": "Command line"}
Coded = dict[str, str]


def time_label(at: datetime, zone: str = DEFAULT_ZONE) -> str:
    """As "Mon 30 Nov 2026, 14:05" in `zone` (daylight saving applied by the zone's rules)."""
    return local_label(at.astimezone(ZoneInfo(zone)))


def local_label(at: datetime) -> str:
    """As "Mon 30 Nov 2026, 14:05" at the time's own offset (a time already in the school's time)."""
    return f"{at:%a} {at.day} {at:%b %Y, %H:%M}"


def date_label(day: date) -> str:
    """As "Tue 8 Dec 2026"."""
    return f"{day:%a} {day.day} {day:%b %Y}"


def parse_time(value: Any, zone: str = DEFAULT_ZONE) -> datetime | None:
    """An aware datetime from ISO 8601 text; a time typed without an offset is the school's local
    time. None for text that is not a time (an old free-text answer such as "yesterday, 3pm").
    """
    if isinstance(value, datetime):
        at = value
    else:
        try:
            at = datetime.fromisoformat(str(value).strip())
        except ValueError:
            return None
    return at if at.tzinfo else at.replace(tzinfo=ZoneInfo(zone))


def when(value: Any, zone: str = DEFAULT_ZONE) -> dict[str, str | None] | None:
    """A recorded time as {"iso": with the school's offset, "label": its words}; text that is
    not a time is kept as it was typed (iso None). None when nothing was recorded.
    """
    if value in (None, ""):
        return None
    if isinstance(value, str) and len(value.strip()) == 10:  # a date typed where a time was asked
        return on_day(value)
    at = parse_time(value, zone)
    if at is None:
        return {"iso": None, "label": str(value)}
    return {"iso": at.astimezone(ZoneInfo(zone)).isoformat(timespec="seconds"), "label": time_label(at, zone)}


def on_day(value: Any) -> dict[str, str | None] | None:
    """A recorded date (YYYY-MM-DD) as {"iso", "label"}; other text kept as typed."""
    if value in (None, ""):
        return None
    try:
        day = date.fromisoformat(str(value).strip()[:10]) if len(str(value).strip()) == 10 else None
    except ValueError:
        day = None
    return {"iso": day.isoformat(), "label": date_label(day)} if day else {"iso": None, "label": str(value)}


def coded(code: Any, label: str | None) -> Coded | None:
    """A code with the label people read (the code itself only where nothing labels it)."""
    if code in (None, ""):
        return None
    return {"code": str(code), "label": label or humanise(str(code))}


def humanise(code: str) -> str:
    """A last resort for a code no policy labels: "not_share" -> "Not share"."""
    text = code.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def platform_label(platform: Any) -> str:
    """The platform's name: "slack" -> "Slack"."""
    return PLATFORMS.get(str(platform), humanise(str(platform or "unknown")))


def words(value: Any, *, empty: str = "None") -> str:
    """Any record value as the text a person reads: labels for codes, times and dates; "Yes"/"No";
    lists joined; `empty` for nothing recorded.
    """
    if value is None or value == "" or value == [] or value == {}:
        return empty
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, Mapping):
        if "label" in value:
            return str(value["label"])
        if "by" in value:
            return signed_words(value)
        return "; ".join(f"{k}: {words(v, empty=empty)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "; ".join(words(v, empty=empty) for v in value)
    return str(value)


def signed_words(sig: Mapping[str, Any]) -> str:
    """A signature as "Dee DSL, Mon 30 Nov 2026, 14:05 (Slack)"."""
    return f"{sig['by']}, {words(sig.get('at'))} ({sig.get('platform')})"


def mid_sentence(label: str) -> str:
    """A label inside a sentence: "Phone" -> "phone", but "UK GDPR" stays."""
    return label[:1].lower() + label[1:] if label[1:2].islower() else label


class Labels:
    """The policy's label for every choice: a field's option, looked up first on the steps the case
    went through (the same value can read differently on two steps: "Consent refused" and
    "Agreement refused"), then on any step.
    """

    def __init__(self, policy: Policy, steps_taken: list[str]) -> None:
        """Index every choice field's options by field key, in the order steps are preferred."""
        order = [s for s in steps_taken if s in policy.steps] + [s for s in policy.steps if s not in steps_taken]
        self.options: dict[str, dict[str, str]] = {}
        for step_id in order:
            for f in policy.steps[step_id].fields:
                if f.type is FieldType.CHOICE:
                    table = self.options.setdefault(f.key, {})
                    for o in f.options:
                        table.setdefault(o.value, o.label)
        self.ends = {str(s.end): s.title for s in policy.steps.values() if s.end}
        self.codes = {c.code: c.label for c in (*policy.reason_codes, *policy.legal_references)}

    def of(self, key: str, value: Any, fallback: Mapping[str, str] | None = None) -> Coded | None:
        """{"code", "label"} for the value of choice field `key`."""
        if value in (None, ""):
            return None
        label = self.options.get(key, {}).get(str(value)) or (fallback or {}).get(str(value))
        return coded(value, label)

    def outcome(self, code: Any) -> Coded | None:
        """An end of the checklist as the policy labels it."""
        return coded(code, self.ends.get(str(code))) if code else None


def code_values(policy: Policy) -> dict[str, str]:
    """Every code the policy labels, with its label: what a readable field must never show bare."""
    table = {c.code: c.label for c in (*policy.reason_codes, *policy.legal_references)}
    table.update({str(s.end): s.title for s in policy.steps.values() if s.end})
    for step in policy.steps.values():
        for f in step.fields:
            table.update({o.value: o.label for o in f.options if o.value != o.label})
    return table
