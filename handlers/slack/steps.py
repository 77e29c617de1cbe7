"""Submitting a step modal: one call into the bot, then the next screen in the same modal.

The bot commits before we answer; the answer is `response_action: update` (the next step
replaces this one, not a pushed view) or `errors` keyed by block_id, shown in place
(https://docs.slack.dev/reference/interaction-payloads/view-interactions-payload#view_submission).
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot import cases
from bot.cases import CaseView, Person, Services
from bot.errors import BotError, InvalidAnswer
from bot.policy.model import Step
from handlers.slack.modals import STEP_CALLBACK, note_modal
from handlers.slack.parse import Submission, parse_submission, parse_values, quoted_text, user_id
from handlers.slack.screens import next_screen


def register(app: AsyncApp, svc: Services) -> None:
    """Every step modal's submission."""

    @app.view(re.compile("^" + re.escape(STEP_CALLBACK)))
    async def on_step(ack: Any, body: dict[str, Any]) -> None:
        view = body.get("view") or {}
        sub = parse_submission(view)
        step = svc.policy.steps.get(sub.step_id)
        try:
            me = await cases.identify(svc, slack_user_id=user_id(body))
            if step is None:
                raise BotError("This form is out of date. Close it and start again.")
            case = await submit(svc, me, sub, parse_values(step, view))
        except InvalidAnswer as problem:
            await ack(response_action="errors", errors=errors_for(step, problem))
            return
        except BotError as refusal:  # not registered, not authorised (audited), someone else answered first
            await ack(response_action="update", view=note_modal(str(refusal)))
            return
        await ack(response_action="update", view=await next_screen(svc, me, case, owner_only=True,
                                                                   quoted=quoted_text(view)))


async def submit(svc: Services, me: Person, sub: Submission, values: dict[str, Any]) -> CaseView:
    """Raise the concern (first step) or answer the step the modal showed, at its version."""
    if sub.case_ref is None:
        return await cases.raise_concern(svc, actor=me, values=values, platform="slack",
                                         idempotency_key=sub.idempotency_key)
    return await cases.answer(svc, actor=me, case_ref=sub.case_ref, version=sub.version, step=sub.step_id,
                              values=values, platform="slack", idempotency_key=sub.idempotency_key)


def errors_for(step: Step | None, problem: InvalidAnswer) -> dict[str, str]:
    """The error under the field it is about (or the first field)."""
    keys = [f.key for f in step.fields] if step else []
    key = problem.field if problem.field in keys else (keys[0] if keys else "")
    text = str(problem).split(": ", 1)[-1]
    text = f"This answer {text}" if re.match(r"(is|must) ", text) else text
    return {key: text[:150]}
