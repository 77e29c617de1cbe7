"""Submitting a step modal: one call into the bot, then the next screen in the same modal.

The bot commits before we answer; the answer is `response_action: update` (the next step
replaces this one, not a pushed view) or `errors` keyed by block_id, shown in place
(https://docs.slack.dev/reference/interaction-payloads/view-interactions-payload#view_submission).
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot import screens
from bot.cases import Services
from bot.errors import BotError, InvalidAnswer
from bot.policy.model import Policy
from bot.screens import Reply
from handlers.slack.first_contact import KNOWN
from handlers.slack.modals import STEP_CALLBACK, note_modal, render_errors, render_modal
from handlers.slack.parse import parse_submission, parse_values, quoted_text, user_id


def register(app: AsyncApp, svc: Services) -> None:
    """Every step modal's submission."""

    @app.view(re.compile("^" + re.escape(STEP_CALLBACK)))
    async def on_step(ack: Any, body: dict[str, Any], context: dict[str, Any]) -> None:
        view = body.get("view") or {}
        reply = parse_reply(svc.policy, view)
        step = svc.policy.steps.get(reply.step_id)
        try:
            # Identified within the answer's own transaction (one per answer), unless already known.
            me = context.get(KNOWN)
            screen = await screens.submit(svc, actor=me, identity=None if me else {"slack_user_id": user_id(body)},
                                          reply=reply, platform="slack")
        except InvalidAnswer as problem:
            error = screens.field_error(step, problem)
            if error.key in _input_blocks(view):
                await ack(response_action="errors", errors=render_errors(error))
            else:  # about a question this form lacks (made before they joined a second school): start again
                await ack(response_action="update", view=note_modal(f"{error.text}: this form is out of date. "
                                                                    "Close it and start again."))
            return
        except BotError as refusal:  # not registered, not authorised (audited), someone else answered first
            await ack(response_action="update", view=note_modal(str(refusal)))
            return
        await ack(response_action="update", view=render_modal(screen))


def _input_blocks(view: dict[str, Any]) -> set[str]:
    """The block ids of the modal's inputs: Slack refuses errors for a block the modal lacks."""
    return {str(b.get("block_id")) for b in view.get("blocks") or [] if isinstance(b, dict) and b.get("type") == "input"}


def parse_reply(policy: Policy, view: dict[str, Any]) -> Reply:
    """The submitted modal as the bot takes it (an unknown step has no values: the bot says the form is out of date)."""
    sub = parse_submission(view)
    step = policy.steps.get(sub.step_id)
    return Reply(step_id=sub.step_id, case_ref=sub.case_ref, version=sub.version,
                 values=parse_values(step, view) if step else {}, idempotency_key=sub.idempotency_key,
                 quoted=quoted_text(view), raised_from=sub.raised_from)
