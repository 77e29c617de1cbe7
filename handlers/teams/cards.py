"""Adaptive Card rendering of bot.screens and bot.messages for Microsoft Teams.

A `Screen` becomes a card (in a dialog, or in a chat with Universal Actions), a `Message` a
notification card. Only elements Teams mobile renders are used (TextBlock, Container,
Input.Text, Input.ChoiceSet, Input.Date, Input.Time, action buttons), schema version 1.5
(https://learn.microsoft.com/microsoftteams/platform/task-modules-and-cards/cards/cards-reference).
Every input's id is its question's key, so Teams merges the answers into the action's data
under those keys (parse.parse_reply); a date and time (a due time, when something happened)
is two inputs, `key.date` and `key.time`. The action data carries the step, the case reference, the version, a nonce and
(in a dialog) the quoted message only: never answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from bot.messages import Kind, Message, render_text
from bot.policy.model import RESERVED_KEYS, FieldType
from bot.screens import CARRIED_LEAD, Detail, FieldError, Question, Screen

Element = dict[str, Any]
SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
TEXT_MAX, LABEL_MAX, ERROR_MAX = 3000, 500, 300
QUOTED_MAX = 4000  # a quoted message carried in dialog data (parse.card_data clips to the same)
EXPANDED_MAX = 10  # more choices than this become a drop-down: a long list of radio buttons buries the Next button
CHOICES_MAX = 500  # a school's staff list fits; the card stays within Teams' payload size
DIGEST_LINES_MAX = 50
RESERVED = tuple(sorted(RESERVED_KEYS))  # data keys an input id must not take (the policy validator refuses them)
ZONE = ZoneInfo("Europe/London")  # UK schools: a date and time picked in Teams is school time
REQUIRED = "This answer is required."
DETAILS_HEADING = "Details (shown here only; not kept in chat history)"
BUTTONS = {Kind.DECISION_NEEDED: "Open and decide", Kind.URGENT_ALERT: "Open case",
           Kind.ACTION_ASSIGNED: "Record outcome", Kind.REMINDER: "Open case", Kind.ESCALATION: "Open case",
           Kind.DRAFT_WAITING: "Open case"}
MULTI = (FieldType.REASONS, FieldType.LEGAL_REFS)
TIMES = (FieldType.DUE, FieldType.DATETIME)  # a date picker and a time picker, `key.date` and `key.time`


def render_card(screen: Screen, *, submit: Literal["execute", "dialog"], nonce: str, error: FieldError | None = None,
                values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The card for `screen`: notices at the very top, then details, the step and what rides below it.

    `error` is shown under the input it is about; `values` (what the person submitted, as Teams
    sent it or as parsed) fill the inputs again, so a re-shown card keeps every answer typed.
    A note screen has no submit button.
    """
    body = [*_notices(screen), *_details(screen.details)]
    if not screen.submittable:
        body.append(text_block(screen.text))
        return _card(body, [])
    body += _step(screen, error, values or {})
    if screen.carried:
        body.append(text_block(CARRIED_LEAD + screen.carried, subtle=True))
    return _card(body, [_submit(screen, submit, nonce)])


def render_message_card(message: Message, *, refresh_user_ids: Sequence[str] = ()) -> dict[str, Any]:
    """A notification for a 1:1 chat: a reference and a verb, never child details.

    `refresh_user_ids`: the people whose Teams fetches the card afresh when they see it
    (Universal Actions refresh, verb "refresh"), so a decided case stops offering "Open and decide".
    """
    ref = message.case_ref
    card = _card(_message_body(message), _message_actions(message))
    if refresh_user_ids:
        card["refresh"] = {"action": _execute("Refresh", "refresh", {"consentbot": "refresh", "case": ref}),
                           "userIds": list(refresh_user_ids)}
    return card


def render_snooze_card(case_ref: str, reasons: Sequence[tuple[str, str]], minutes: Sequence[int],
                       nonce: str) -> dict[str, Any]:
    """The form bot.ack.snooze needs: a reason code (from the policy's (code, label) pairs) and minutes.

    No reasons or durations (the policy allows no snoozing): a card saying so, with no button.
    """
    body = [text_block(f"Case {case_ref}", subtle=True)]
    if not reasons or not minutes:
        body.append(text_block("Reminders for this case cannot be snoozed: the school's policy does not allow it."))
        return _card(body, [])
    body += [text_block("Reminders about this case pause for the time you choose. "
                        "Your DSL can see who snoozed them and why."),
             _choice_set("reason", "Why are you snoozing them?", reasons, required=True),
             _choice_set("minutes", "For how long?", [(str(m), _duration(m)) for m in minutes], required=True)]
    data = {"consentbot": "snooze_save", "case": case_ref, "nonce": nonce}
    return _card(body, [_execute("Snooze", "snooze_save", data)])


def card_attachment(card: dict[str, Any]) -> dict[str, Any]:
    """The card as an activity attachment."""
    return {"contentType": CARD_TYPE, "content": card}


def invoke_card_response(card: dict[str, Any]) -> dict[str, Any]:
    """The answer to an `adaptiveCard/action` invoke: Teams replaces the card with this one
    (https://learn.microsoft.com/microsoftteams/platform/task-modules-and-cards/cards/universal-actions-for-adaptive-cards/work-with-universal-actions-for-adaptive-cards).
    """
    return {"statusCode": 200, "type": CARD_TYPE, "value": card}


def dialog_response(card: dict[str, Any], *, title: str = "Safeguarding concern") -> dict[str, Any]:
    """The answer to task/fetch, task/submit, composeExtension/fetchTask or /submitAction: show `card` in the dialog."""
    return {"task": {"type": "continue", "value": {"title": title, "card": card_attachment(card)}}}


def text_block(text: str, *, bold: bool = False, attention: bool = False, subtle: bool = False,
               limit: int = TEXT_MAX) -> Element:
    """A wrapping TextBlock, clipped. Text is shown as typed: TextBlocks read a little markdown, which is harmless."""
    block: Element = {"type": "TextBlock", "text": clip(text, limit), "wrap": True}
    if bold:
        block["weight"] = "bolder"
    if attention:
        block["color"] = "attention"
    if subtle:
        block.update(isSubtle=True, size="small")
    return block


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0] + "…"


def _card(body: list[Element], actions: list[Element]) -> dict[str, Any]:
    return {"type": "AdaptiveCard", "$schema": SCHEMA, "version": "1.5", "body": body, "actions": actions}


def _notices(screen: Screen) -> list[Element]:
    """The notices first (999, then who was alerted or the fallback contacts): never below a question."""
    blocks = [text_block(n, bold=True, attention=True) for n in screen.notices]
    if screen.urgent and not screen.notices:
        blocks.append(text_block("Urgent case.", bold=True, attention=True))
    return blocks


def _details(shown: tuple[Detail, ...] | None) -> list[Element]:
    """A case's recorded answers, label above value (long free text reads badly in a FactSet's narrow column)."""
    if shown is None:
        return []
    items = [{"type": "Container", "spacing": "small",
              "items": [text_block(d.label, bold=True, limit=LABEL_MAX), text_block(d.value)]} for d in shown]
    return [text_block(DETAILS_HEADING, bold=True), *items]


def _step(screen: Screen, error: FieldError | None, values: Mapping[str, Any]) -> list[Element]:
    blocks = [text_block(f"Case {screen.case_ref}", subtle=True)] if screen.case_ref else []
    blocks.append(text_block(screen.title, bold=True))
    blocks[0]["separator"] = True  # a line between the notices and details above and the step
    if screen.help:
        blocks.append(text_block(screen.help, subtle=True))
    if error and screen.question(error.key) is None:  # about no question shown: still said, above them
        blocks.append(_error(error))
    for q in screen.questions:
        blocks += _inputs(q, _prefill(q, values))
        if error and error.key == q.key:
            blocks.append(_error(error))
        if q.hint:
            blocks.append(text_block(q.hint, subtle=True))
    return blocks


def _error(error: FieldError) -> Element:
    return text_block(error.text, attention=True, limit=ERROR_MAX)


def _inputs(q: Question, prefill: Mapping[str, str]) -> list[Element]:
    """The input(s) asking `q`: a date and time is a date picker and a time picker."""
    if q.kind in TIMES:
        date_id, time_id = f"{q.key}.date", f"{q.key}.time"
        return [_input("Input.Date", date_id, f"{q.label} (date)", q, prefill.get(date_id)),
                _input("Input.Time", time_id, f"{q.label} (time)", q, prefill.get(time_id))]
    value = prefill.get(q.key)
    if q.kind is FieldType.DATE:
        return [_input("Input.Date", q.key, q.label, q, value)]
    if q.kind in MULTI or q.kind is FieldType.CHOICE or q.choices:  # an assignee without colleagues listed is typed
        return [_choice_set(q.key, q.label, q.choices, required=not q.optional, value=value, multi=q.kind in MULTI,
                            placeholder="Choose a member of staff" if q.kind is FieldType.ASSIGNEE else "Choose one")]
    element = _input("Input.Text", q.key, q.label, q, value)
    if q.max_length:
        element["maxLength"] = q.max_length
    if q.kind is FieldType.LONGTEXT:
        element["isMultiline"] = True
    return [element]


def _input(kind: str, input_id: str, label: str, q: Question, value: str | None) -> Element:
    element: Element = {"type": kind, "id": input_id, "label": clip(label, LABEL_MAX)}
    if not q.optional:
        element.update(isRequired=True, errorMessage=REQUIRED)
    if value:
        element["value"] = value
    return element


def _choice_set(input_id: str, label: str, pairs: Sequence[tuple[str, str]], *, required: bool,
                value: str | None = None, multi: bool = False, placeholder: str = "Choose one") -> Element:
    element: Element = {"type": "Input.ChoiceSet", "id": input_id, "label": clip(label, LABEL_MAX),
                        "style": "expanded" if len(pairs) <= EXPANDED_MAX else "compact", "wrap": True,
                        "choices": [{"title": title, "value": v} for v, title in pairs[:CHOICES_MAX]]}
    if multi:
        element["isMultiSelect"] = True
    if element["style"] == "compact":
        element["placeholder"] = "Choose any that apply" if multi else placeholder
    if required:
        element.update(isRequired=True, errorMessage=REQUIRED)
    if value:
        element["value"] = value
    return element


def _prefill(q: Question, values: Mapping[str, Any]) -> dict[str, str]:
    """What each input of `q` shows: what the person sent (raw or parsed), else the question's initial value."""
    if q.kind in TIMES:
        sent = {k: values[k] for k in (f"{q.key}.date", f"{q.key}.time") if isinstance(values.get(k), str)}
        return sent or _due_parts(q.key, values.get(q.key, q.initial))
    raw = values[q.key] if q.key in values else q.initial
    if isinstance(raw, list | tuple):
        return {q.key: ",".join(str(v) for v in raw)}  # how Teams holds a multi-select's value
    return {q.key: str(raw)} if raw is not None else {}


def _due_parts(key: str, raw: Any) -> dict[str, str]:
    """An ISO date-time as the date and time pickers show it, in school time ({} when unreadable)."""
    try:
        when = datetime.fromisoformat(str(raw)) if raw else None
    except ValueError:
        return {}
    if when is None or when.tzinfo is None:
        return {}
    local = when.astimezone(ZONE)
    return {f"{key}.date": local.date().isoformat(), f"{key}.time": local.strftime("%H:%M")}


def _submit(screen: Screen, submit: Literal["execute", "dialog"], nonce: str) -> Element:
    """"Next": its data says which screen was answered, never what the answers were."""
    data: dict[str, Any] = {"consentbot": "step", "step": screen.step_id, "case": screen.case_ref or "",
                            "version": -1 if screen.version is None else screen.version, "nonce": nonce}
    if submit == "execute":
        return _execute("Next", "step", data)
    if screen.carried:  # a dialog only: Action.Execute cards sit in the chat, where a quoted message must not ride
        data["quoted"] = clip(screen.carried, QUOTED_MAX)
    return {"type": "Action.Submit", "title": "Next", "data": data}


def _execute(title: str, verb: str, data: dict[str, Any]) -> Element:
    return {"type": "Action.Execute", "title": title, "verb": verb, "data": data}


def _message_body(m: Message) -> list[Element]:
    loud = m.urgent or m.kind in (Kind.URGENT_ALERT, Kind.UNREACHABLE)
    if m.kind is Kind.DIGEST:
        lines = [text_block(line) for line in m.lines[:DIGEST_LINES_MAX]]
        more = len(m.lines) - DIGEST_LINES_MAX
        return [text_block("Safeguarding digest", bold=True), *lines,
                *([text_block(f"…and {more} more.", subtle=True)] if more > 0 else [])]
    body = [text_block(render_text(m), bold=loud, attention=loud)]
    if m.kind not in BUTTONS:
        body.append(text_block("Details open only inside the case window in Teams, for the people allowed to see them.",
                               subtle=True))
    return body


def _message_actions(m: Message) -> list[Element]:
    ref = m.case_ref
    actions = []
    if m.kind in BUTTONS:
        actions += [_execute(BUTTONS[m.kind], "open", {"consentbot": "open", "case": ref}),
                    {"type": "Action.Submit", "title": "Show details",
                     "data": {"msteams": {"type": "task/fetch"}, "consentbot": "details", "case": ref}}]
    if m.can_acknowledge:
        actions.append(_execute("Acknowledge: I have it", "acknowledge", {"consentbot": "acknowledge", "case": ref}))
    if m.can_snooze:
        actions.append(_execute("Snooze", "snooze", {"consentbot": "snooze", "case": ref}))
    return actions


def _duration(minutes: int) -> str:
    """60 → "1 hour", 240 → "4 hours", 1440 → "1 day", 90 → "90 minutes" (as the Slack form says it)."""
    amount, unit = next(((minutes // size, name) for size, name in ((1440, "day"), (60, "hour"))
                         if minutes and minutes % size == 0), (minutes, "minute"))
    return f"{amount} {unit}{'' if amount == 1 else 's'}"
