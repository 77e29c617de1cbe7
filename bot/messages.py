"""Platform-neutral outgoing messages. They carry a case reference and a verb, never any
child-identifying detail; the platforms render them (Block Kit, Adaptive Cards, terminal).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum

from bot.readable import local_label


class Kind(StrEnum):
    """What a message asks of its reader."""

    DECISION_NEEDED = "decision_needed"
    URGENT_ALERT = "urgent_alert"
    ACTION_ASSIGNED = "action_assigned"
    DECIDED = "decided"
    REMINDER = "reminder"
    ESCALATION = "escalation"
    CLOSED = "closed"
    DIGEST = "digest"
    DRAFT_WAITING = "draft_waiting"  # a concern started but not finished by the person raising it
    UNREACHABLE = "unreachable"  # to the escalation contact: no DSL or deputy could be alerted


@dataclass(frozen=True)
class Message:
    """One notification to one person."""

    kind: Kind
    case_ref: str
    urgent: bool = False
    step_title: str | None = None
    due_at: str | None = None
    by: str | None = None  # a member of staff's display name (never a child's)
    at: str | None = None
    supersedes: str | None = None  # dedupe key of the message this one updates
    lines: tuple[str, ...] = ()  # digest lines: references and counts only
    can_snooze: bool = False  # a routine outcome reminder: the reader may snooze it (bot.ack.snooze)
    can_acknowledge: bool = False  # an urgent alert: a DSL or deputy acknowledges it (bot.ack.acknowledge)

    def to_json(self) -> str:
        """The outbox payload."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Message:
        """Read an outbox payload."""
        data = json.loads(text)
        data["kind"] = Kind(data["kind"])
        data["lines"] = tuple(data.get("lines") or ())
        return cls(**data)


def in_words(text: str | None) -> str | None:
    """A message's time (ISO 8601 at the school's offset) as "Mon 30 Nov 2026, 14:05"; other text unchanged."""
    try:
        at = datetime.fromisoformat(text) if text else None
    except ValueError:
        return text
    return local_label(at) if at else text


def render_text(m: Message) -> str:
    """The message as one line of plain text (also the fallback text of rich messages), times in words."""
    flag = "URGENT: " if m.urgent else ""
    due = f", due {in_words(m.due_at)}" if m.due_at else ""
    texts = {
        Kind.DECISION_NEEDED: f"{flag}Concern {m.case_ref} needs your decision ({m.step_title}).",
        Kind.URGENT_ALERT: f"URGENT: concern {m.case_ref} needs a DSL now (immediate danger or significant harm). "
                           "Open the case.",
        Kind.ACTION_ASSIGNED: f"{flag}You are asked to act on concern {m.case_ref}: {m.step_title}{due}.",
        Kind.DECIDED: f"Concern {m.case_ref}: decided by {m.by} at {in_words(m.at)}.",
        Kind.REMINDER: f"{flag}Reminder: concern {m.case_ref} is waiting for you: {m.step_title}{due}.",
        Kind.ESCALATION: f"{flag}Escalated: concern {m.case_ref} is overdue: {m.step_title}{due}.",
        Kind.CLOSED: f"Concern {m.case_ref}, which you raised, has been closed by {m.by}. Thank you for raising it.",
        Kind.DIGEST: "Safeguarding digest:\n" + "\n".join(m.lines),
        Kind.DRAFT_WAITING: f"{flag}Concern {m.case_ref} was started but not finished by the member of staff "
                            f"raising it (waiting at: {m.step_title}). Open the case to see it.",
        Kind.UNREACHABLE: f"URGENT: concern {m.case_ref} needs a DSL now, but no DSL or deputy can be reached "
                          "through the bot. Contact the DSL or a deputy directly.",
    }
    return texts[m.kind]
