"""The assignee picker's search: Slack sends what was typed in a step modal's external_select
(`block_suggestion`, https://docs.slack.dev/reference/block-kit/block-elements/select-menu-element#external_select)
and shows the options we answer with, at most 100. Who may be found is decided in bot/
(screens.assignee_search: the case's school, the roles the field allows, for someone who may
answer the step); the choice is checked again when the step is submitted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot import cases, screens
from bot.cases import Services
from bot.errors import BotError
from handlers.slack.blocks import option
from handlers.slack.modals import STEP_CALLBACK
from handlers.slack.parse import parse_submission, user_id

TYPED_MAX = 100  # characters of a search read (a name or an email is shorter)


@dataclass(frozen=True)
class Suggestion:
    """What was typed into which field of which step modal, on which case."""

    step_id: str
    case_ref: str | None
    key: str
    typed: str


def parse_suggestion(body: dict[str, Any]) -> Suggestion:
    """A block_suggestion from a step modal (empty values for anything else)."""
    view = body.get("view") or {}
    shown = parse_submission(view) if str(view.get("callback_id", "")).startswith(STEP_CALLBACK) else None
    return Suggestion(step_id=shown.step_id if shown else "", case_ref=shown.case_ref if shown else None,
                      key=str(body.get("action_id") or ""), typed=str(body.get("value") or "")[:TYPED_MAX])


def register(app: AsyncApp, svc: Services) -> None:
    """Answer every external select's search in a step modal."""

    @app.options(re.compile(".+"))
    async def on_search(ack: Any, body: dict[str, Any]) -> None:
        asked = parse_suggestion(body)
        found: list[tuple[str, str]] = []
        if asked.case_ref:
            try:
                me = await cases.identify(svc, slack_user_id=user_id(body))
                found = await screens.assignee_search(svc, actor=me, case_ref=asked.case_ref, step_id=asked.step_id,
                                                      key=asked.key, typed=asked.typed)
            except BotError:  # not registered, or not allowed to see the case: refused (and logged) in bot/
                found = []
        await ack(options=[option(value, label) for value, label in found])
