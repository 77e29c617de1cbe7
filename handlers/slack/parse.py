"""Reading Slack payloads into what the bot's use cases take. Tolerant of missing fields:
a malformed payload yields empty values (the bot then says what is required), never a crash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.policy.model import FieldType, Step
from bot.screens import SCHOOL
from handlers.slack.modals import QUOTED, RAISED_FROM, STEP_CALLBACK


@dataclass(frozen=True)
class Submission:
    """A modal submitted: which step, on which case (None: a new concern), at which version."""

    step_id: str
    case_ref: str | None
    version: int
    idempotency_key: str
    raised_from: str | None = None  # a new concern raised from this earlier case


def user_id(body: dict[str, Any]) -> str:
    """The Slack user who acted (commands carry `user_id`, interactions a `user` object)."""
    user = body.get("user")
    return str((user or {}).get("id") if isinstance(user, dict) else body.get("user_id") or "")


def parse_submission(view: dict[str, Any]) -> Submission:
    """Step, case and version of a submitted step modal. The key is the view id and hash,
    which Slack changes on every update, so a double submit of one screen replays.
    """
    step_id = str(view.get("callback_id", ""))[len(STEP_CALLBACK):]
    metadata = str(view.get("private_metadata") or "")
    raised_from = metadata.removeprefix(RAISED_FROM) if metadata.startswith(RAISED_FROM) else None
    ref, _, version = ("" if raised_from else metadata).partition(":")
    digest = hashlib.sha256(f"{view.get('id')}:{view.get('hash')}".encode()).hexdigest()[:32]
    return Submission(step_id=step_id, case_ref=ref or None, version=int(version) if version.isdigit() else -1,
                      idempotency_key=f"slack:view:{digest}", raised_from=(raised_from or "")[:20] or None)


def parse_values(step: Step, view: dict[str, Any]) -> dict[str, Any]:
    """The answers to `step` from `view.state.values` (block_id and action_id are the field key), with
    the school chosen by someone of several schools when the modal asked it.
    """
    state = ((view.get("state") or {}).get("values") or {}) if isinstance(view.get("state"), dict) else {}
    school = _value((state.get(SCHOOL) or {}).get(SCHOOL) or {}, multi=False)
    values: dict[str, Any] = {SCHOOL: school} if school else {}
    for f in step.fields:
        element = (state.get(f.key) or {}).get(f.key) or {}
        value = _value(element, multi=f.type in (FieldType.REASONS, FieldType.LEGAL_REFS))
        if value not in (None, ""):
            values[f.key] = value
    return values


def _value(element: dict[str, Any], *, multi: bool) -> Any:
    if multi:
        return [str(o.get("value")) for o in element.get("selected_options") or [] if isinstance(o, dict)]
    if isinstance(element.get("selected_option"), dict):
        return str(element["selected_option"].get("value"))
    if element.get("selected_date_time") is not None:
        return _iso(element["selected_date_time"])
    if isinstance(element.get("selected_date"), str):
        return element["selected_date"]
    value = element.get("value")
    return value if isinstance(value, str) else None


def _iso(timestamp: Any) -> str | None:
    try:
        return datetime.fromtimestamp(int(timestamp), UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def quoted_text(view: dict[str, Any]) -> str:
    """The quoted message a step modal carries (see modals.quoted_block), or ""."""
    for block in view.get("blocks") or []:
        if isinstance(block, dict) and block.get("block_id") == QUOTED:
            text = str(((block.get("elements") or [{}])[0] or {}).get("text") or "")
            return text.split(": ", 1)[-1]
    return ""


def message_text(body: dict[str, Any]) -> str:
    """The text of the message a message shortcut was used on (sensitive: modal only)."""
    message = body.get("message")
    return str(message.get("text") or "") if isinstance(message, dict) else ""
