"""Raising a concern: `/concern`, the global shortcut and the message shortcut each open the
checklist's first step in a modal. Slack wants an answer within 3 seconds
(https://docs.slack.dev/interactivity/handling-user-interaction#acknowledgment_response),
so we ack first; the trigger_id stays valid for views.open for those same 3 seconds.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import cases
from bot.cases import Services
from bot.errors import NotFound
from handlers.slack.modals import note_modal, quoted_block, step_modal
from handlers.slack.parse import message_text, user_id


def register(app: AsyncApp, svc: Services) -> None:
    """The three ways in."""

    @app.command("/concern")
    async def on_command(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await open_first_step(svc, client, body)

    @app.shortcut("concern_global")
    async def on_global_shortcut(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await open_first_step(svc, client, body)

    @app.shortcut("concern_from_message")
    async def on_message_shortcut(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await open_first_step(svc, client, body, quoted=message_text(body))


async def open_first_step(svc: Services, client: AsyncWebClient, body: dict[str, Any], quoted: str = "") -> None:
    """The first step, the immediate-danger question (G1); a quoted message rides below it until
    the step that asks what was seen or heard.
    """
    try:  # refuse unregistered people before they answer anything
        await cases.identify(svc, slack_user_id=user_id(body))
    except NotFound as refusal:
        await client.views_open(trigger_id=body["trigger_id"], view=note_modal(str(refusal)))
        return
    start = svc.policy.steps[svc.policy.start]
    modal = step_modal(start, view=None, policy=svc.policy, trail=[quoted_block(quoted)] if quoted else [])
    await client.views_open(trigger_id=body["trigger_id"], view=modal)
