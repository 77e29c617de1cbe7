"""The "Download the record (PDF)" button in a case's window: bot.views.export_for checks the
role and logs the request; the file goes only into the clicker's own DM with the app, through
Slack's external upload (files.getUploadURLExternal, the bytes, files.completeUploadExternal:
https://docs.slack.dev/messaging/working-with-files#upload). The message beside the file names
the case reference only. Needs the files:write scope.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from bot import cases, views
from bot.cases import Services
from bot.errors import BotError
from handlers.slack.blocks import EXPORT_PDF
from handlers.slack.modals import note_modal
from handlers.slack.open_case import refuse
from handlers.slack.parse import user_id

logger = logging.getLogger(__name__)
SENT = "The record of case {ref} is in your direct messages with consentbot, as a PDF. Keep it in the child " \
       "protection file; do not forward it."
NOT_SENT = "The record of case {ref} could not be sent to your direct messages just now. Please try again."


def register(app: AsyncApp, svc: Services) -> None:
    """Send a case's record as a PDF to the DSL or deputy who asked, in their DM only."""

    @app.action(EXPORT_PDF)
    async def on_export(ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        who = user_id(body)
        try:
            me = await cases.identify(svc, slack_user_id=who)
            export = await views.export_for(svc, actor=me, case_ref=str(action.get("value") or ""), platform="slack")
        except BotError as refusal:
            await tell(client, body, str(refusal))
            return
        sent = await send_to_dm(client, who, export)
        await tell(client, body, (SENT if sent else NOT_SENT).format(ref=export.case_ref))


async def send_to_dm(client: AsyncWebClient, slack_user: str, export: views.Export) -> bool:
    """Upload the file into the bot's DM with `slack_user` (opened first: a file is shared into a
    channel id, not a user id). False, logged by code, if Slack refused or failed.
    """
    try:
        opened = await client.conversations_open(users=slack_user)
        channel = str(opened["channel"]["id"])
        await client.files_upload_v2(channel=channel, file=export.data, filename=export.filename,
                                     title=f"Consent decision record {export.case_ref}",
                                     initial_comment=f"Consent decision record for case {export.case_ref} (PDF).")
    except SlackApiError as exc:
        logger.warning("slack export not sent case=%s error=%s", export.case_ref, exc.response.get("error"))
        return False
    except SlackRequestError as exc:  # the upload URL refused the bytes
        logger.warning("slack export not sent case=%s error=%s", export.case_ref, type(exc).__name__)
        return False
    logger.info("slack export sent case=%s user=%s", export.case_ref, slack_user)
    return True


async def tell(client: AsyncWebClient, body: dict[str, Any], text: str) -> None:
    """Only the clicker sees it: a modal stacked on the case window, else as a refusal is shown."""
    if body.get("view") and body.get("trigger_id"):
        await client.views_push(trigger_id=body["trigger_id"], view=note_modal(text))
    else:
        await refuse(client, body, text)
