"""Block Kit pieces shared by the modals, the DMs and the Home tab.

Limits are Slack's (https://docs.slack.dev/reference/block-kit/composition-objects/option-object):
option text 75 characters, section text 3000, modal title 24, private_metadata 3000.
Every button's value is a case reference and nothing else.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.cases import CaseView
from bot.messages import Kind, Message, render_text
from bot.readable import local_label, time_label

Block = dict[str, Any]
OPEN_CASE = "open_case"  # the action id of every button that opens a case in a modal
ACKNOWLEDGE = "acknowledge"  # an urgent alert's "I have it": stops the escalation (bot.ack.acknowledge)
SNOOZE = "snooze"  # a routine reminder's "not yet": opens the snooze form (bot.ack.snooze)
RAISE_FROM = "raise_from"  # a case window's "Raise a new concern about this child" (G5 re-escalation)
EXPORT_PDF = "export_pdf"  # a case window's "Download the record (PDF)": the file goes to the clicker's DM
FALLBACK_ZONE = ZoneInfo("Europe/London")  # UK schools; Slack shows each reader their own time instead
DATE_MARK = "\x00"  # brackets a date token inside text about to be escaped (never in a message)
OPTION_TEXT_MAX = 75
SECTION_TEXT_MAX = 3000
BUTTONS = {Kind.DECISION_NEEDED: "Open and decide", Kind.URGENT_ALERT: "Open case",
           Kind.ACTION_ASSIGNED: "Record outcome", Kind.REMINDER: "Open case", Kind.ESCALATION: "Open case"}


def escape(text: str) -> str:
    """Slack mrkdwn needs &, < and > escaped (https://docs.slack.dev/messaging/formatting-message-text)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0] + "…"


def plain(text: str, limit: int = SECTION_TEXT_MAX) -> dict[str, Any]:
    """A plain_text object."""
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def section(text: str) -> Block:
    """A mrkdwn section; `text` must already be escaped."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_TEXT_MAX)}}


def context(text: str) -> Block:
    """Small grey text; `text` must already be escaped."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, SECTION_TEXT_MAX)}]}


def option(value: str, label: str, *, described: bool = False) -> dict[str, Any]:
    """An option object; radio buttons and checkboxes carry the rest of a long label as description."""
    item: dict[str, Any] = {"text": plain(label, OPTION_TEXT_MAX), "value": value}
    if described and len(label) > OPTION_TEXT_MAX:
        rest = label[len(item["text"]["text"]) - 1:].strip()
        item["description"] = plain(rest, OPTION_TEXT_MAX)
    return item


def open_button(case_ref: str, label: str, *, primary: bool = True) -> Block:
    """The button that opens a case's details (and the step waiting for the clicker) in a modal."""
    button: Block = {"type": "button", "action_id": OPEN_CASE, "value": case_ref, "text": plain(label, 75)}
    if primary:
        button["style"] = "primary"
    return button


def raise_from_button(case_ref: str) -> Block:
    """A case window's "Raise a new concern about this child": the checklist again, linked to this case."""
    return {"type": "button", "action_id": RAISE_FROM, "value": case_ref,
            "text": plain("Raise a new concern about this child", 75)}


def case_actions(case_ref: str, *, export: bool) -> Block:
    """A case window's buttons: a new concern about the same child, and for a DSL or deputy the
    download (the bot decides again, when clicked, who may have either).
    """
    buttons = [raise_from_button(case_ref)]
    if export:
        buttons.append({"type": "button", "action_id": EXPORT_PDF, "value": case_ref,
                        "text": plain("Download the record (PDF)", 75)})
    return {"type": "actions", "block_id": f"export:{case_ref}", "elements": buttons}


def acknowledge_button(case_ref: str) -> Block:
    """Stops the urgent escalation, so a phone's stray tap is asked to confirm first."""
    confirm = {"title": plain("Acknowledge this alert?", 100),
               "text": plain("You are taking this urgent concern: consentbot stops alerting others about it.", 300),
               "confirm": plain("Acknowledge", 30), "deny": plain("Not yet", 30)}
    return {"type": "button", "action_id": ACKNOWLEDGE, "value": case_ref, "text": plain("Acknowledge", 75),
            "confirm": confirm}


def snooze_button(case_ref: str) -> Block:
    """Opens the form asking why and for how long (bot.ack.snooze needs both)."""
    return {"type": "button", "action_id": SNOOZE, "value": case_ref, "text": plain("Snooze reminders", 75)}


def render_message(m: Message) -> tuple[str, list[Block]]:
    """A notification as (fallback text, blocks): a reference and a verb, never child details.
    A time in it is Slack's date formatting in the blocks (each reader's own time); the fallback
    text (notifications) says it in the school's time, in words.
    """
    text = render_text(m)
    shown = render_text(replace(m, due_at=_token(m.due_at), at=_token(m.at)))
    icon = ":rotating_light: " if m.urgent or m.kind is Kind.URGENT_ALERT else ""
    blocks = [section(icon + _escape_around_tokens(shown))]
    buttons = _buttons(m)
    if buttons:
        blocks.append({"type": "actions", "block_id": f"case:{m.case_ref}", "elements": buttons})
    else:
        blocks.append(context("Details open only inside Slack's case window, for the people allowed to see them."))
    return text, blocks


def _buttons(m: Message) -> list[Block]:
    buttons = [open_button(m.case_ref, BUTTONS[m.kind])] if m.kind in BUTTONS else []
    if m.can_acknowledge:
        buttons.append(acknowledge_button(m.case_ref))
    if m.can_snooze:
        buttons.append(snooze_button(m.case_ref))
    return buttons


def slack_time(at: datetime, *, fallback: str | None = None) -> str:
    """A date and time Slack shows in each reader's own timezone ("Today 14:05", "Nov 30th 14:05");
    the fallback, for clients that cannot, is `fallback` or the time in words in UK time
    (https://docs.slack.dev/messaging/formatting-message-text#date-formatting).
    """
    fallback = fallback or time_label(at, FALLBACK_ZONE.key)
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def _parse(text: str | None) -> datetime | None:
    """A message's time: ISO 8601 at the school's offset (one without an offset is UK time)."""
    try:
        at = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return at.replace(tzinfo=FALLBACK_ZONE) if at and not at.tzinfo else at


def _token(text: str | None) -> str | None:
    at = _parse(text)
    return DATE_MARK + slack_time(at, fallback=local_label(at)) + DATE_MARK if at else text


def _escape_around_tokens(text: str) -> str:
    """Escape the text for mrkdwn, but not the date tokens placed in it."""
    parts = text.split(DATE_MARK)
    return "".join(part if i % 2 else escape(part) for i, part in enumerate(parts))


def render_acknowledged(blocks: list[Block], *, by: str, at: datetime) -> list[Block]:
    """A clicked urgent alert's blocks without its Acknowledge button (the others stay), saying who took it."""
    kept: list[Block] = []
    for block in blocks:
        if block.get("type") == "actions":
            block = {**block, "elements": [e for e in block.get("elements") or [] if e.get("action_id") != ACKNOWLEDGE]}
            if not block["elements"]:
                continue  # Slack refuses an actions block with no elements
        kept.append(block)
    line = f"Acknowledged by {escape(by)} at {slack_time(at)}. The escalation to others has stopped."
    return [*kept, context(line)]


def case_line(view: CaseView, *, overdue: bool = False) -> Block:
    """One case on the Home tab: reference, urgency, what it waits for, with an Open button."""
    flags = (" :rotating_light: urgent" if view.urgent else "") + (" · *overdue*" if overdue else "")
    waiting = view.step.title if view.step else view.status
    due = ""
    if view.due_at and view.status == "awaiting_outcome":
        due = f" · due {slack_time(view.due_at)}"
    return {**section(f"*{view.ref}*{flags}\n{escape(waiting)}{due}"),
            "accessory": open_button(view.ref, "Open", primary=False)}


def render_home(groups: list[tuple[str, list[tuple[CaseView, bool]]]], *, intro: str) -> dict[str, Any]:
    """The Home tab: groups of case lines (references only)."""
    blocks: list[Block] = [{"type": "header", "text": plain("Safeguarding concerns", 150)}, context(escape(intro))]
    for title, items in groups:
        blocks += [{"type": "divider"}, section(f"*{escape(title)}* ({len(items)})")]
        blocks += [case_line(view, overdue=overdue) for view, overdue in items[:30]]
        if len(items) > 30:
            blocks.append(context(f"…and {len(items) - 30} more."))
    blocks.append(context("Use /concern, or the shortcut on any message, to raise a new concern."))
    return {"type": "home", "blocks": blocks[:100]}
