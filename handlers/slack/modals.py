"""Modals: one checklist step at a time, case details, and short notes.

Every question is an `input` block whose block_id and action_id are the field's key, so a
validation error can be shown in place (`response_action: errors` is keyed by block_id:
https://docs.slack.dev/surfaces/modals#displaying_errors). Only elements the Slack mobile
app renders are used: plain_text_input, radio_buttons, checkboxes, static_select,
multi_static_select, datepicker, datetimepicker (no number_input, no rich_text_input).
`private_metadata` holds the case reference and version only; the step is in callback_id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.cases import CaseView
from bot.checklist import TEXT_LIMITS
from bot.policy.model import Field, FieldType, Option, Policy, Step
from handlers.slack.blocks import Block, clip, context, escape, option, plain, section

TITLE = "Safeguarding concern"
STEP_CALLBACK = "step:"
RADIO_MAX, CHECKBOX_MAX, SELECT_MAX = 10, 10, 100
TEXT_MAX = TEXT_LIMITS  # the form's limit is the one the bot enforces (plain_text_input allows 3000 at most)


def to_metadata(view: CaseView | None) -> str:
    """The only state a modal carries: case reference and the version the person saw."""
    return f"{view.ref}:{view.version}" if view else ""


def step_modal(step: Step, *, view: CaseView | None, policy: Policy, colleagues: Sequence[tuple[str, str]] = (),
               initial: Mapping[str, str] | None = None, lead: Sequence[Block] = (),
               trail: Sequence[Block] = ()) -> dict[str, Any]:
    """The modal asking `step`, with the case's notices at the very top and `trail` below the questions."""
    choices = view.choices if view else {}
    blocks = [*_notices(view), *lead]
    if view:
        blocks.append(context(f"Case *{view.ref}*"))
    blocks.append(section(f"*{escape(step.title)}*"))
    if step.help:
        blocks.append(context(escape(step.help)))
    for f in step.fields:
        options = choices.get(f.key, f.options)
        blocks.append(_input(f, policy, options, colleagues, (initial or {}).get(f.key)))
        if f.type is FieldType.LEGAL_REFS:
            blocks.append(context(escape(policy.disclaimer)))
    blocks += trail
    return {"type": "modal", "callback_id": STEP_CALLBACK + step.id, "private_metadata": to_metadata(view),
            "title": plain(TITLE, 24), "submit": plain("Next", 24), "close": plain("Close", 24),
            "blocks": blocks[:100]}


def note_modal(text: str, *, view: CaseView | None = None, lead: Sequence[Block] = ()) -> dict[str, Any]:
    """A modal that only says something (no inputs, so no submit button)."""
    blocks = [*_notices(view), *lead, section(escape(text))]
    return {"type": "modal", "callback_id": "note", "private_metadata": to_metadata(view),
            "title": plain(TITLE, 24), "close": plain("Close", 24), "blocks": blocks[:100]}


def _notices(view: CaseView | None) -> list[Block]:
    """The notices first (999, then who was alerted or the fallback contacts): never below a question."""
    if view is None:
        return []
    blocks = [section(f":rotating_light: *{escape(n)}*") for n in view.notices]
    if view.urgent and not view.notices:
        blocks.append(context(":rotating_light: Urgent case."))
    return blocks


QUOTED = "quoted"  # block_id of the message a concern was raised from, carried until the concern step


def quoted_block(text: str) -> Block:
    """The message chosen with the message shortcut, shown (plain text, so it reads back unchanged)
    until the step that asks what was seen or heard, which it then fills in.
    """
    return {"type": "context", "block_id": QUOTED, "elements": [
        {"type": "plain_text", "text": clip("Your concern will start from the message you chose: " + text, 2000),
         "emoji": False}]}


def details_blocks(facts: Mapping[str, Any], policy: Policy) -> list[Block]:
    """A case's recorded answers, labelled as the policy asks them. Modal only, never a message."""
    fields = {f.key: f for s in policy.steps.values() for f in s.fields}
    blocks = [section("*Details* (shown here only; not kept in chat history)")]
    for key, value in facts.items():
        f = fields.get(key)
        if f is None or value in (None, "", []) or isinstance(value, dict):
            continue
        blocks.append(section(f"*{escape(clip(f.label, 200))}*\n{escape(_shown(f, value, policy))}"))
    blocks.append({"type": "divider"})
    return blocks[:60]


def _shown(f: Field, value: Any, policy: Policy) -> str:
    labels = {o.value: o.label for o in f.options}
    labels.update({c.code: c.label for c in (*policy.reason_codes, *policy.legal_references)})
    items = value if isinstance(value, list) else [value]
    return "; ".join(labels.get(str(v), str(v)) for v in items)


def _input(f: Field, policy: Policy, options: tuple[Option, ...], colleagues: Sequence[tuple[str, str]],
           initial: str | None) -> Block:
    block: Block = {"type": "input", "block_id": f.key, "label": plain(f.label, 2000),
                    "element": {**_element(f, policy, options, colleagues, initial), "action_id": f.key}}
    if f.optional or f.required_if_any or f.type is FieldType.REASONS or (f.type is FieldType.DUE and f.due_hours):
        block["optional"] = True
    return block


def _element(f: Field, policy: Policy, options: tuple[Option, ...], colleagues: Sequence[tuple[str, str]],
             initial: str | None) -> dict[str, Any]:
    if f.type in TEXT_MAX:
        element = {"type": "plain_text_input", "multiline": f.type is FieldType.LONGTEXT,
                   "max_length": TEXT_MAX[f.type]}
        return {**element, "initial_value": initial[: TEXT_MAX[f.type]]} if initial else element
    if f.type is FieldType.CHOICE:
        return _single([(o.value, o.label) for o in options])
    if f.type is FieldType.ASSIGNEE:
        return _single(list(colleagues), placeholder="Choose a member of staff")
    if f.type is FieldType.DUE:
        return {"type": "datetimepicker"}
    if f.type is FieldType.DATE:
        return {"type": "datepicker"}
    codes = policy.reason_codes if f.type is FieldType.REASONS else current_legal_refs(policy)
    return _multi([(c.code, c.label) for c in codes])


def current_legal_refs(policy: Policy) -> list[Any]:
    """The legal references a DSL may pick (historical ones stay in the record only)."""
    return [c for c in policy.legal_references if not c.historical]


def _single(pairs: list[tuple[str, str]], placeholder: str = "Choose one") -> dict[str, Any]:
    if len(pairs) <= RADIO_MAX:
        return {"type": "radio_buttons", "options": [option(v, label, described=True) for v, label in pairs]}
    return {"type": "static_select", "placeholder": plain(placeholder, 150),
            "options": [option(v, label) for v, label in pairs[:SELECT_MAX]]}


def _multi(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    if len(pairs) <= CHECKBOX_MAX:
        return {"type": "checkboxes", "options": [option(v, label, described=True) for v, label in pairs]}
    return {"type": "multi_static_select", "placeholder": plain("Choose any that apply", 150),
            "options": [option(v, label) for v, label in pairs[:SELECT_MAX]]}
