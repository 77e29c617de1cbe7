"""What each Teams activity does: parse it, make one bot call, render the answer.

- A message in the personal chat: `concern` offers the checklist, `cases` lists the person's cases.
- A dialog (task/fetch, task/submit) runs the checklist one step at a time, like a Slack modal:
  nothing typed stays in the chat. The message extension on a message opens the same dialog
  with the message carried to the step that asks what was seen or heard.
- Cards in the chat use Universal Actions: handlers/teams/actions.py.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from microsoft_teams.api.activities.message.message import MessageActivityInput
from microsoft_teams.api.models.attachment.attachment import Attachment
from microsoft_teams.apps import App

from bot import cases, contacts, screens, views
from bot.cases import Person, Services
from bot.errors import BotError
from handlers.teams.actions import on_card_action
from handlers.teams.cards import card_attachment, dialog_response, render_card
from handlers.teams.common import Ctx, answer, guarded, nonce, note_card, raw, value_of, who
from handlers.teams.parse import card_data, quoted_from_message
from handlers.teams.platform import Address

logger = logging.getLogger(__name__)
HELP = ("Type **concern** to raise a safeguarding concern, or **cases** to see the cases waiting for you. "
        "You can also raise a concern from a message: its ... menu > More actions > Raise a concern.")


def normalised(activity: dict[str, Any]) -> dict[str, Any]:
    """The activity as the SDK can read it. microsoft-teams-api 2.1.1 accepts only `"manual"` as
    an Universal Action's trigger, so an automatic refresh (a card shown to someone in its
    refresh list) fails validation with a 500; it is the same request to us.
    """
    value = activity.get("value")
    if activity.get("name") == "adaptiveCard/action" and isinstance(value, dict) and value.get("trigger") == "automatic":
        activity = {**activity, "value": {**value, "trigger": "manual"}}
    return activity


def register(app: App, svc: Services, *, tenant_id: str) -> None:
    """Every handler, and the middleware before them."""
    app.use(_middleware(svc, tenant_id))
    app.on_message(_on_message(svc))
    app.on_dialog_open(_on_dialog_open(svc))
    app.on_dialog_submit(_on_submit(svc))
    app.on_message_ext_open(_on_message_action(svc))
    app.on_message_ext_submit(_on_submit(svc))
    app.on_card_action(on_card_action(svc))


def tenant_of(activity: dict[str, Any]) -> str:
    """The Microsoft 365 organisation an activity comes from."""
    conversation, channel = activity.get("conversation") or {}, activity.get("channelData") or {}
    return str(conversation.get("tenantId") or (channel.get("tenant") or {}).get("id") or "")


def _middleware(svc: Services, tenant_id: str) -> Callable[[Ctx], Awaitable[None]]:
    async def middleware(ctx: Ctx) -> None:
        activity = raw(ctx)
        if tenant_of(activity).lower() != tenant_id.lower():
            # The bot serves one school organisation: someone elsewhere must not be linked to a
            # registered person by an email address their own administrator chose.
            logger.warning("teams activity from another organisation refused type=%s", activity.get("type"))
            return
        if activity.get("type") != "invoke" and activity.get("id"):
            # Teams redelivers what it thinks we missed: handle each activity once.
            if not await cases.claim_delivery(svc, key=f"teams:activity:{activity['id']}"[:200]):
                logger.info("teams activity seen before type=%s", activity.get("type"))
                return
        await _remember(svc, activity)
        await ctx.next()

    return middleware


async def _remember(svc: Services, activity: dict[str, Any]) -> None:
    """Keep the 1:1 chat's reference, for the messages the bot starts later."""
    conversation, sender = activity.get("conversation") or {}, activity.get("from") or {}
    if conversation.get("conversationType") != "personal" or not sender.get("aadObjectId"):
        return
    address = Address(str(activity.get("serviceUrl") or "").rstrip("/"), str(conversation.get("id")),
                      str(sender.get("id") or ""))
    await contacts.remember_address(svc, platform="teams", user_id=str(sender["aadObjectId"]),
                                    address=address.to_json())


def _on_message(svc: Services) -> Callable[[Ctx], Awaitable[None]]:
    async def on_message(ctx: Ctx) -> None:
        words = str(raw(ctx).get("text") or "").strip().lower().split()
        command = words[-1] if words else ""  # after any @mention of the bot
        try:
            me = await who(svc, ctx)
        except BotError as refusal:
            await _reply(ctx, note_card(str(refusal)))
            return
        if command == "concern":
            await _reply(ctx, _start_card())
        elif command == "cases":
            await _reply(ctx, await _cases_card(svc, me))
        else:
            await _reply(ctx, note_card(HELP))

    return on_message


async def _reply(ctx: Ctx, card: dict[str, Any]) -> None:
    """Answer in the chat the person wrote in (references and buttons only)."""
    await ctx.send(MessageActivityInput(text="consentbot").add_attachments(Attachment(**card_attachment(card))))


def _start_card() -> dict[str, Any]:
    """One button opening the checklist in a dialog (typed answers never enter the chat)."""
    card = note_card("Raise a safeguarding concern. The checklist opens in a window; what you type there is not "
                     "kept in this chat.")
    card["actions"] = [_dialog_button("Raise a concern", {"consentbot": "raise"})]
    return card


async def _cases_card(svc: Services, me: Person) -> dict[str, Any]:
    mine = await views.my_cases(svc, actor=me)
    if not mine:
        return note_card("No open cases are waiting for you.")
    card = note_card("\n\n".join(screens.where_now(svc.policy, c) for c in mine[:20]))
    card["actions"] = [_dialog_button(f"Open {c.ref}", {"consentbot": "details", "case": c.ref}) for c in mine[:5]]
    return card


def _dialog_button(title: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Action.Submit", "title": title, "data": {"msteams": {"type": "task/fetch"}, **data}}


def _on_dialog_open(svc: Services) -> Callable[[Ctx], Awaitable[Any]]:
    async def on_open(ctx: Ctx) -> Any:  # a dict: the SDK sends it as the invoke's body
        data = card_data(value_of(ctx).get("data"))
        if data.action == "details":
            return dialog_response(await guarded(svc, ctx, lambda me: screens.case_screen(
                svc, actor=me, case_ref=data.case_ref or ""), submit="dialog"))
        return dialog_response(await _first(svc, ctx, quoted=""))

    return on_open


def _on_message_action(svc: Services) -> Callable[[Ctx], Awaitable[Any]]:
    async def on_action(ctx: Ctx) -> Any:  # a dict: the SDK sends it as the invoke's body
        return dialog_response(await _first(svc, ctx, quoted=quoted_from_message(value_of(ctx).get("messagePayload"))))

    return on_action


async def _first(svc: Services, ctx: Ctx, *, quoted: str) -> dict[str, Any]:
    """The immediate-danger question first (G1), or why this person cannot raise a concern."""
    try:
        me = await who(svc, ctx)
    except BotError as refusal:
        return note_card(str(refusal))
    start = screens.start_screen(svc.policy, quoted=quoted, schools=await screens.school_choices(svc, me))
    return render_card(start, submit="dialog", nonce=nonce())


def _on_submit(svc: Services) -> Callable[[Ctx], Awaitable[Any]]:
    async def on_submit(ctx: Ctx) -> Any:  # a dict: the SDK sends it as the invoke's body
        return dialog_response(await answer(svc, ctx, value_of(ctx).get("data"), submit="dialog"))

    return on_submit
