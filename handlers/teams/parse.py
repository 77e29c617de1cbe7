"""Reading Teams card submissions into what the bot's use cases take. Tolerant of anything:
a malformed payload yields empty values (the bot then says what is required), never a crash.

Teams merges a card's input values into its action's data: for Action.Execute they arrive in
`activity.value.action.data`, for Action.Submit in a dialog in `activity.value.data`. Either
way every value is a string; a multi-select is one comma-separated string ("a,b").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from html.parser import HTMLParser
from typing import Any

from bot.policy.model import Field, FieldType, Policy
from bot.screens import SCHOOL, Reply
from handlers.teams.cards import MULTI, QUOTED_MAX, ZONE

ID_MAX = 200  # an action, step, case reference or nonce: ours are far shorter


@dataclass(frozen=True)
class CardData:
    """What a clicked card's action data says: which action, on which case, step and version."""

    action: str
    case_ref: str | None
    step_id: str
    version: int
    nonce: str
    quoted: str


@dataclass(frozen=True)
class SnoozeAnswer:
    """A submitted snooze card (cards.render_snooze_card): missing parts empty, for the bot to explain."""

    case_ref: str
    reason: str
    minutes: int


def card_data(data: Any) -> CardData:
    """The action data of a card (`action` "" when it is not one of ours)."""
    if not isinstance(data, Mapping):
        return CardData(action="", case_ref=None, step_id="", version=-1, nonce="", quoted="")
    return CardData(action=_string(data.get("consentbot")), case_ref=_string(data.get("case")) or None,
                    step_id=_string(data.get("step")), version=_version(data.get("version")),
                    nonce=_string(data.get("nonce")), quoted=_string(data.get("quoted"), QUOTED_MAX))


def parse_reply(policy: Policy, data: Mapping[str, Any]) -> Reply:
    """A submitted step card as the bot's Reply. The nonce (fresh on every card shown) is the
    idempotency key, so a double tap on one card replays rather than answering twice.
    """
    sent = card_data(data)
    step = policy.steps.get(sent.step_id)
    end_of_day = str((policy.settings.get("school_time") or {}).get("working_end") or "17:00")
    values = _values(step.fields, data, end_of_day) if step is not None and isinstance(data, Mapping) else {}
    if school := _string(data.get(SCHOOL)) if isinstance(data, Mapping) else "":
        values[SCHOOL] = school  # someone of several schools chose which (bot/screens.py asks it)
    return Reply(step_id=sent.step_id, case_ref=sent.case_ref, version=sent.version, values=values,
                 idempotency_key=f"teams:card:{sent.nonce}" if sent.nonce else None, quoted=sent.quoted)


def parse_snooze(data: Any) -> SnoozeAnswer:
    """The case, reason code and minutes of a submitted snooze card."""
    sent = data if isinstance(data, Mapping) else {}
    minutes = _string(sent.get("minutes")).strip()
    return SnoozeAnswer(case_ref=card_data(sent).case_ref or "", reason=_string(sent.get("reason")),
                        minutes=int(minutes) if minutes.isdigit() else 0)


def quoted_from_message(payload: Any) -> str:
    """The plain text of the message a message extension action was used on (sensitive: dialog only).

    `payload` is the activity, its `value`, or the `messagePayload` itself: `messagePayload.body.content`
    is HTML when `contentType` is "html".
    """
    body = _message_body(payload)
    if not isinstance(body, Mapping) or not isinstance(body.get("content"), str):
        return ""
    content = body["content"]
    text = _html_text(content) if str(body.get("contentType") or "").lower() == "html" else content
    return " ".join(text.split())[:QUOTED_MAX]


def _message_body(payload: Any) -> Any:
    """`body` of the messagePayload, whichever level of the invoke `payload` is."""
    for key in ("value", "messagePayload"):
        if isinstance(payload, Mapping) and "body" not in payload and isinstance(payload.get(key), Mapping):
            payload = payload[key]
    return payload.get("body") if isinstance(payload, Mapping) else None


def _values(fields: tuple[Field, ...], data: Mapping[str, Any], end_of_day: str = "17:00") -> dict[str, Any]:
    """The answers to the step's fields only, exactly as typed (the bot trims and checks them)."""
    values: dict[str, Any] = {}
    for f in fields:
        if f.type is FieldType.DUE:
            value: Any = _due(data.get(f"{f.key}.date"), data.get(f"{f.key}.time"), end_of_day)
        elif f.type is FieldType.DATETIME:  # when something happened: a date alone is not enough
            value = _due(data.get(f"{f.key}.date"), data.get(f"{f.key}.time"), None)
        elif f.type in MULTI:
            value = _multi(data.get(f.key))
        else:
            value = data.get(f.key) if isinstance(data.get(f.key), str) else None
        if value not in (None, "", []):
            values[f.key] = value
    return values


def _multi(raw: Any) -> list[str]:
    items = raw.split(",") if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return [item.strip() for item in items if isinstance(item, str) and item.strip()]


def _due(day: Any, at: Any, end_of_day: str | None) -> str | None:
    """A date picker's "2026-12-08" and a time picker's "14:30" as an ISO date-time in school time
    (+00:00 in winter, +01:00 in summer). A date alone: by the end of that working day (the
    policy's working_end), never dropped; with no `end_of_day` (a time something happened), the
    date as sent, which the bot refuses as incomplete. Neither: missing, and the bot applies the
    policy's due time when the field allows it. Unreadable: the text as sent, so the bot's check explains it.
    """
    day = day.strip() if isinstance(day, str) else ""
    at = at.strip() if isinstance(at, str) else ""
    if not day and not at:
        return None
    at = at or end_of_day or ""
    try:
        return datetime.combine(date.fromisoformat(day), time.fromisoformat(at), tzinfo=ZONE).isoformat()
    except ValueError:
        return f"{day} {at}".strip()


def _string(raw: Any, limit: int = ID_MAX) -> str:
    return raw[:limit] if isinstance(raw, str) else ""


def _version(raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"-?\d{1,9}", raw.strip()):
        return int(raw)
    return -1


class _TextOnly(HTMLParser):
    """Collects the text of an HTML fragment (entities decoded); tags other than inline ones become spaces."""

    INLINE = frozenset(("a", "at", "b", "code", "em", "font", "i", "s", "span", "strike", "strong", "sub", "sup", "u"))
    SKIPPED = frozenset(("script", "style"))

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self._skipping += 1
        if tag not in self.INLINE:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED and self._skipping:
            self._skipping -= 1
        if tag not in self.INLINE:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _html_text(content: str) -> str:
    parser = _TextOnly()
    parser.feed(content)
    parser.close()
    return "".join(parser.parts)
