"""The "Open" buttons (DMs and Home tab): the case's details in a modal, for authorised people
only (bot.views.open_details checks and logs), with the step waiting for the clicker, if any.
A refusal is audited by the bot and shown only to the clicker (ephemeral).
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import cases, screens
from bot.cases import Services
from bot.errors import BotError
from bot.screens import Screen
from handlers.slack.blocks import OPEN_CASE, case_actions
from handlers.slack.modals import BLOCKS_MAX, note_modal, render_modal
from handlers.slack.parse import user_id


def register(app: AsyncApp, svc: Services) -> None:
    """Open a case from a button whose value is the case reference."""

    @app.action(OPEN_CASE)
    async def on_open(ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        try:
            me = await cases.identify(svc, slack_user_id=user_id(body))
            screen = await screens.case_screen(svc, actor=me, case_ref=str(action.get("value") or ""))
        except BotError as refusal:
            await refuse(client, body, str(refusal))
            return
        modal = render_modal(screen)
        await client.views_open(trigger_id=body["trigger_id"], view=with_actions(modal, screen, export=me.is_decider))


def with_actions(modal: dict[str, Any], screen: Screen, *, export: bool) -> dict[str, Any]:
    """A case window with its buttons under the details: a new concern about the same child, and
    for a DSL or deputy the download (the bot checks again when either is clicked).
    """
    blocks = list(modal["blocks"])
    after = next((i + 1 for i, b in enumerate(blocks) if b.get("type") == "divider"), len(blocks))
    blocks.insert(after, case_actions(str(screen.case_ref), export=export))
    return {**modal, "blocks": blocks[:BLOCKS_MAX]}


async def refuse(client: AsyncWebClient, body: dict[str, Any], text: str) -> None:
    """Tell only the clicker: ephemeral in the conversation, or a modal from the Home tab."""
    channel = (body.get("channel") or {}).get("id")
    if channel:
        await client.chat_postEphemeral(channel=channel, user=user_id(body), text=text)
    else:
        await client.views_open(trigger_id=body["trigger_id"], view=note_modal(text))
