"""What each Teams activity does: parse it, make one bot call, render the answer.

- A message in the personal chat: `concern` offers the checklist, `cases` lists the person's cases.
- A dialog (task/fetch, task/submit) runs the checklist one step at a time, like a Slack modal:
  nothing typed stays in the chat. The message extension on a message opens the same dialog
  with the message carried to the step that asks what was seen or heard.
- Cards in the chat use Universal Actions (`adaptiveCard/action`): open the step waiting for the
  clicker, answer it (a DSL decides here; the first decision wins), acknowledge, snooze, refresh.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from microsoft_teams.api.activities.message.message import MessageActivityInput
from microsoft_teams.api.models.attachment.attachment import Attachment
from microsoft_teams.apps import App

from bot import ack, cases, contacts, screens, views
from bot.cases import Person, Services
from bot.errors import BotError, InvalidAnswer, NotFound
from bot.screens import Screen
from handlers.teams.cards import (
    card_attachment,
    dialog_response,
    invoke_card_response,
    render_card,
    render_snooze_card,
)
from handlers.teams.parse import card_data, parse_reply, quoted_from_message
from handlers.teams.platform import Address

logger = logging.getLogger(__name__)
Ctx = Any  # microsoft_teams.apps.ActivityContext[...]; typed loosely: we read the raw activity
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


def raw(ctx: Ctx) -> dict[str, Any]:
    """The activity as Teams sent it (camelCase)."""
    return dict(ctx.activity.model_dump(by_alias=True, exclude_none=True))


async def who(svc: Services, ctx: Ctx) -> Person:
    """The registered person acting: by Entra object id, or on first contact by their email or
    sign-in name (from the Bot Connector's roster), linked then. NotFound for anyone else.
    """
    sender = raw(ctx).get("from") or {}
    aad = str(sender.get("aadObjectId") or "")
    if not aad:
        raise NotFound(contacts.NOT_REGISTERED)
    person = await contacts.known(svc, platform="teams", user_id=aad)
    if person is not None:
        return person
    return await contacts.recognise(svc, platform="teams", user_id=aad, emails=await _emails(ctx, sender))


async def _emails(ctx: Ctx, sender: dict[str, Any]) -> list[str]:
    conversation = str((raw(ctx).get("conversation") or {}).get("id") or "")
    try:
        member = await ctx.api.conversations.members_client.get_by_id(conversation, str(sender.get("id") or ""))
    except Exception as exc:  # noqa: BLE001 - no roster entry: treated as unregistered, logged by type
        logger.warning("teams roster lookup failed error=%s", type(exc).__name__)
        return []
    return [e for e in (member.email, member.user_principal_name) if e]


def register(app: App, svc: Services) -> None:
    """Every handler, and the middleware before them."""
    app.use(_middleware(svc))
    app.on_message(_on_message(svc))
    app.on_dialog_open(_on_dialog_open(svc))
    app.on_dialog_submit(_on_submit(svc))
    app.on_message_ext_open(_on_message_action(svc))
    app.on_message_ext_submit(_on_submit(svc))
    app.on_card_action(_on_card_action(svc))


def _middleware(svc: Services) -> Callable[[Ctx], Awaitable[None]]:
    async def middleware(ctx: Ctx) -> None:
        activity = raw(ctx)
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
            await _reply(ctx, _note_card(str(refusal)))
            return
        if command == "concern":
            await _reply(ctx, _start_card())
        elif command == "cases":
            await _reply(ctx, await _cases_card(svc, me))
        else:
            await _reply(ctx, _note_card(HELP))

    return on_message


async def _reply(ctx: Ctx, card: dict[str, Any]) -> None:
    """Answer in the chat the person wrote in (references and buttons only)."""
    await ctx.send(MessageActivityInput(text="consentbot").add_attachments(_attachment(card)))


def _attachment(card: dict[str, Any]) -> Attachment:
    return Attachment(**card_attachment(card))


def _start_card() -> dict[str, Any]:
    """One button opening the checklist in a dialog (typed answers never enter the chat)."""
    card = render_card(screens.note_screen("Raise a safeguarding concern. The checklist opens in a window; "
                                           "what you type there is not kept in this chat."),
                       submit="dialog", nonce=_nonce())
    card["actions"] = [{"type": "Action.Submit", "title": "Raise a concern",
                        "data": {"msteams": {"type": "task/fetch"}, "consentbot": "raise"}}]
    return card


async def _cases_card(svc: Services, me: Person) -> dict[str, Any]:
    mine = await views.my_cases(svc, actor=me)
    if not mine:
        return _note_card("No open cases are waiting for you.")
    lines = [screens.where_now(svc.policy, c) for c in mine[:20]]
    card = render_card(screens.note_screen("\n\n".join(lines)), submit="dialog", nonce=_nonce())
    card["actions"] = [{"type": "Action.Submit", "title": f"Open {c.ref}",
                        "data": {"msteams": {"type": "task/fetch"}, "consentbot": "details", "case": c.ref}}
                       for c in mine[:5]]
    return card


def _note_card(text: str) -> dict[str, Any]:
    return render_card(screens.note_screen(text), submit="dialog", nonce=_nonce())


def _nonce() -> str:
    """A fresh key per card shown: a double click on one card answers once (the bot replays)."""
    return secrets.token_urlsafe(12)


def _value(ctx: Ctx) -> dict[str, Any]:
    value = raw(ctx).get("value")
    return value if isinstance(value, dict) else {}


def _on_dialog_open(svc: Services) -> Callable[[Ctx], Awaitable[Any]]:
    async def on_open(ctx: Ctx) -> Any:  # a dict: the SDK sends it as the invoke's body
        data = card_data(_value(ctx).get("data"))
        if data.action == "details":
            return dialog_response(await _guarded(svc, ctx, lambda me: screens.case_screen(
                svc, actor=me, case_ref=data.case_ref or ""), submit="dialog"))
        return dialog_response(await _first(svc, ctx, quoted=""))

    return on_open


def _on_message_action(svc: Services) -> Callable[[Ctx], Awaitable[Any]]:
    async def on_action(ctx: Ctx) -> Any:  # a dict: the SDK sends it as the invoke's body
        return dialog_response(await _first(svc, ctx, quoted=quoted_from_message(_value(ctx).get("messagePayload"))))

    return on_action


async def _first(svc: Services, ctx: Ctx, *, quoted: str) -> dict[str, Any]:
    """The immediate-danger question first (G1), or why this person cannot raise a concern."""
    try:
        await who(svc, ctx)
    except BotError as refusal:
        return _note_card(str(refusal))
    return render_card(screens.start_screen(svc.policy, quoted=quoted), submit="dialog", nonce=_nonce())


def _on_submit(svc: Services) -> Callable[[Ctx], Awaitable[Any]]:
    async def on_submit(ctx: Ctx) -> Any:  # a dict: the SDK sends it as the invoke's body
        return dialog_response(await _answer(svc, ctx, _value(ctx).get("data"), submit="dialog"))

    return on_submit


async def _answer(svc: Services, ctx: Ctx, data: Any, *, submit: str) -> dict[str, Any]:
    """Record a step's answers; the next screen for this person, or the form again with the bot's objection."""
    reply = parse_reply(svc.policy, data if isinstance(data, dict) else {})
    try:
        me = await who(svc, ctx)
        screen = await screens.submit(svc, actor=me, reply=reply, platform="teams")
    except InvalidAnswer as problem:
        step = svc.policy.steps.get(reply.step_id)
        shown = await _same_screen(svc, reply)
        return render_card(shown, submit=submit, nonce=_nonce(),  # type: ignore[arg-type]
                           error=screens.field_error(step, problem), values=data)
    except BotError as refusal:  # not registered, not authorised (audited), someone else answered first
        return _note_card(str(refusal))
    return render_card(screen, submit=submit, nonce=_nonce())  # type: ignore[arg-type]


async def _same_screen(svc: Services, reply: screens.Reply) -> Screen:
    """The screen the person answered, to show again with what they typed."""
    step = svc.policy.steps[reply.step_id]
    shown = screens.step_screen(svc.policy, step, quoted=reply.quoted)
    return Screen(**{**shown.__dict__, "case_ref": reply.case_ref, "version": reply.version})


async def _guarded(svc: Services, ctx: Ctx, make: Callable[[Person], Awaitable[Screen]], *,
                   submit: str) -> dict[str, Any]:
    """The screen `make` gives this person, or a note saying why not."""
    try:
        screen = await make(await who(svc, ctx))
    except BotError as refusal:
        return _note_card(str(refusal))
    return render_card(screen, submit=submit, nonce=_nonce())  # type: ignore[arg-type]


def _on_card_action(svc: Services) -> Callable[[Ctx], Awaitable[Any]]:
    async def on_card_action(ctx: Ctx) -> Any:  # a dict: the SDK sends it as the invoke's body
        action = _value(ctx).get("action") or {}
        data = action.get("data") if isinstance(action, dict) else None
        verb = str(action.get("verb") or "") if isinstance(action, dict) else ""
        return invoke_card_response(await _card_verb(svc, ctx, verb, data))

    return on_card_action


async def _card_verb(svc: Services, ctx: Ctx, verb: str, data: Any) -> dict[str, Any]:
    ref = card_data(data).case_ref or ""
    if verb == "step":
        return await _answer(svc, ctx, data, submit="execute")
    if verb == "open":
        return await _guarded(svc, ctx, lambda me: _waiting(svc, me, ref), submit="execute")
    if verb == "refresh":
        return await _refreshed(svc, ctx, ref)
    if verb == "acknowledge":
        return await _done(svc, ctx, lambda me: ack.acknowledge(svc, actor=me, case_ref=ref),
                           f"You have case {ref}. The escalation to others has stopped.")
    if verb == "snooze":
        reasons, durations = ack.snooze_options(svc)
        return render_snooze_card(ref, reasons, durations, _nonce())
    if verb == "snooze_save":
        values = data if isinstance(data, dict) else {}
        return await _done(svc, ctx, lambda me: ack.snooze(svc, actor=me, case_ref=ref, reason=str(values.get("reason")),
                                                           minutes=_minutes(values.get("minutes"))),
                           f"Reminders for case {ref} are snoozed.")
    return _note_card("This card is out of date. Type **cases** to see your cases.")


def _minutes(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


async def _waiting(svc: Services, me: Person, ref: str) -> Screen:
    """The step waiting for the clicker (no details in a chat card: those open in a dialog)."""
    return await screens.next_screen(svc, me, await views.status_of(svc, actor=me, case_ref=ref))


async def _refreshed(svc: Services, ctx: Ctx, ref: str) -> dict[str, Any]:
    """A card refreshing itself: where the case stands now (decided, or still waiting)."""
    try:
        case = await views.status_of(svc, actor=await who(svc, ctx), case_ref=ref)
    except BotError as refusal:
        return _note_card(str(refusal))
    return render_card(screens.note_screen(screens.where_now(svc.policy, case), case), submit="execute",
                       nonce=_nonce())


async def _done(svc: Services, ctx: Ctx, act: Callable[[Person], Awaitable[Any]], said: str) -> dict[str, Any]:
    try:
        await act(await who(svc, ctx))
    except BotError as refusal:
        return _note_card(str(refusal))
    return _note_card(said)

