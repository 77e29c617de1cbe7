"""Block Kit rendering of bot.screens: a `Screen` becomes a modal, a `FieldError` the modal's errors.

Every question is an `input` block whose block_id and action_id are the field's key, so a
validation error can be shown in place (`response_action: errors` is keyed by block_id:
https://docs.slack.dev/surfaces/modals#displaying_errors). Only elements the Slack mobile
app renders are used: plain_text_input, radio_buttons, checkboxes, static_select,
multi_static_select, external_select, datepicker, datetimepicker (no number_input, no
rich_text_input). An assignee is picked from radio buttons in a small school, else searched:
an external_select that handlers/slack/assignee_search.py answers, so nobody is cut off at 100.
`private_metadata` holds the case reference and version only; the step is in callback_id.
"""

from __future__ import annotations

from typing import Any

from bot.cases import CaseView
from bot.policy.model import FieldType, Policy, Step
from bot.screens import CARRIED_LEAD, Detail, FieldError, Question, Screen, note_screen, step_screen
from handlers.slack.blocks import Block, clip, context, escape, option, plain, section

TITLE = "Safeguarding concern"
STEP_CALLBACK = "step:"
RAISED_FROM = "from:"  # private_metadata of a new concern raised from an earlier case
QUOTED = "quoted"  # block_id of the message a concern was raised from, carried until the concern step
RADIO_MAX, CHECKBOX_MAX, SELECT_MAX = 10, 10, 100
BLOCKS_MAX, DETAILS_MAX, ERROR_MAX = 100, 60, 150  # Slack's caps: blocks in a modal, ours for details, error text
TEXT_INPUTS = (FieldType.TEXT, FieldType.LONGTEXT)


def render_modal(screen: Screen) -> dict[str, Any]:
    """The modal for `screen`: notices at the very top, then details, the step and what rides below it."""
    blocks = [*_notices(screen), *_details(screen.details)]
    if not screen.submittable:
        blocks.append(section(escape(screen.text)))
        return {"type": "modal", "callback_id": "note", "private_metadata": _metadata(screen),
                "title": plain(TITLE, 24), "close": plain("Close", 24), "blocks": blocks[:BLOCKS_MAX]}
    if screen.raised_from:
        blocks.append(context(f"A new concern about the same child as case {escape(screen.raised_from)}: "
                              "the two cases will show the link."))
    blocks += _step(screen)
    if screen.carried:
        blocks.append(quoted_block(screen.carried))
    return {"type": "modal", "callback_id": STEP_CALLBACK + str(screen.step_id), "private_metadata": _metadata(screen),
            "title": plain(TITLE, 24), "submit": plain("Next", 24), "close": plain("Close", 24),
            "blocks": blocks[:BLOCKS_MAX]}


def render_errors(error: FieldError) -> dict[str, str]:
    """`response_action: errors`: the text under the input block it is about."""
    return {error.key: error.text[:ERROR_MAX]}


def note_modal(text: str, *, view: CaseView | None = None) -> dict[str, Any]:
    """A modal that only says something (no inputs, so no submit button)."""
    return render_modal(note_screen(text, view))


def step_modal(step: Step, *, view: CaseView | None, policy: Policy) -> dict[str, Any]:
    """The modal asking `step` as the bot's screen model has it."""
    return render_modal(step_screen(policy, step, view))


def _metadata(screen: Screen) -> str:
    """The only state a modal carries: case reference and the version the person saw; for a new
    concern raised from an earlier case, that case's reference (`from:C-...`).
    """
    if screen.case_ref:
        return f"{screen.case_ref}:{screen.version}"
    return f"{RAISED_FROM}{screen.raised_from}" if screen.raised_from else ""


def _notices(screen: Screen) -> list[Block]:
    """The notices first (999, then who was alerted or the fallback contacts): never below a question."""
    blocks = [section(f":rotating_light: *{escape(n)}*") for n in screen.notices]
    if screen.urgent and not screen.notices:
        blocks.append(context(":rotating_light: Urgent case."))
    return blocks


def _details(shown: tuple[Detail, ...] | None) -> list[Block]:
    """A case's recorded answers. Modal only, never a message."""
    if shown is None:
        return []
    blocks = [section("*Details* (shown here only; not kept in chat history)")]
    blocks += [section(f"*{escape(clip(d.label, 200))}*\n{escape(d.value)}") for d in shown]
    blocks.append({"type": "divider"})
    return blocks[:DETAILS_MAX]


def _step(screen: Screen) -> list[Block]:
    blocks = [context(f"Case *{screen.case_ref}*")] if screen.case_ref else []
    blocks.append(section(f"*{escape(screen.title)}*"))
    if screen.help:
        blocks.append(context(escape(screen.help)))
    for q in screen.questions:
        blocks.append(_input(q))
        if q.hint:
            blocks.append(context(escape(q.hint)))
    return blocks


def quoted_block(text: str) -> Block:
    """The message chosen with the message shortcut, shown (plain text, so it reads back unchanged:
    see parse.quoted_text) until the step that asks what was seen or heard, which it then fills in.
    """
    return {"type": "context", "block_id": QUOTED, "elements": [
        {"type": "plain_text", "text": clip(CARRIED_LEAD + text, 2000), "emoji": False}]}


def _input(q: Question) -> Block:
    block: Block = {"type": "input", "block_id": q.key, "label": plain(q.label, 2000),
                    "element": {**_element(q), "action_id": q.key}}
    if q.optional:
        block["optional"] = True
    return block


def _element(q: Question) -> dict[str, Any]:
    if q.kind in TEXT_INPUTS:
        element = {"type": "plain_text_input", "multiline": q.kind is FieldType.LONGTEXT, "max_length": q.max_length}
        return {**element, "initial_value": q.initial} if q.initial else element
    if q.kind is FieldType.CHOICE:
        return _single(q.choices)
    if q.kind is FieldType.ASSIGNEE:
        return _assignee(q.choices)
    if q.kind in (FieldType.DUE, FieldType.DATETIME):
        return {"type": "datetimepicker"}
    if q.kind is FieldType.DATE:
        return {"type": "datepicker"}
    return _multi(q.choices)


def _single(pairs: tuple[tuple[str, str], ...], placeholder: str = "Choose one") -> dict[str, Any]:
    if len(pairs) <= RADIO_MAX:
        return {"type": "radio_buttons", "options": [option(v, label, described=True) for v, label in pairs]}
    return {"type": "static_select", "placeholder": plain(placeholder, 150),
            "options": [option(v, label) for v, label in pairs[:SELECT_MAX]]}


def _assignee(pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    if len(pairs) <= RADIO_MAX:
        return _single(pairs)
    # min_query_length 0: the first names (alphabetical) show at once, and typing narrows them.
    return {"type": "external_select", "placeholder": plain("Type a name to search", 150), "min_query_length": 0}


def _multi(pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    if len(pairs) <= CHECKBOX_MAX:
        return {"type": "checkboxes", "options": [option(v, label, described=True) for v, label in pairs]}
    return {"type": "multi_static_select", "placeholder": plain("Choose any that apply", 150),
            "options": [option(v, label) for v, label in pairs[:SELECT_MAX]]}
