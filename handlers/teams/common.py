"""What every Teams handler needs: the raw activity, who is acting, and the replies they share
(a note, the form again under the bot's objection, the next screen).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from bot import contacts, screens
from bot.cases import Person, Services
from bot.errors import BotError, InvalidAnswer, NotFound
from bot.screens import Screen
from handlers.teams.cards import render_card
from handlers.teams.parse import parse_reply

logger = logging.getLogger(__name__)
Ctx = Any  # microsoft_teams.apps.ActivityContext[...]; typed loosely: handlers read the raw activity
Submit = Literal["execute", "dialog"]


def raw(ctx: Ctx) -> dict[str, Any]:
    """The activity as Teams sent it (camelCase)."""
    return dict(ctx.activity.model_dump(by_alias=True, exclude_none=True))


def value_of(ctx: Ctx) -> dict[str, Any]:
    """An invoke's `value`."""
    value = raw(ctx).get("value")
    return value if isinstance(value, dict) else {}


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


def nonce() -> str:
    """A fresh key per card shown: a double click on one card answers once (the bot replays)."""
    return secrets.token_urlsafe(12)


def note_card(text: str) -> dict[str, Any]:
    """A card that only says something."""
    return render_card(screens.note_screen(text), submit="dialog", nonce=nonce())


async def answer(svc: Services, ctx: Ctx, data: Any, *, submit: Submit) -> dict[str, Any]:
    """Record a step's answers; the next screen for this person, or the same form again, with
    what they typed and the bot's objection under the question it is about.
    """
    reply = parse_reply(svc.policy, data if isinstance(data, dict) else {})
    try:
        me = await who(svc, ctx)
        screen = await screens.submit(svc, actor=me, reply=reply, platform="teams")
    except InvalidAnswer as problem:
        shown = await screens.again(svc, actor=me, reply=reply)
        return render_card(shown, submit=submit, nonce=nonce(), values=data,
                           error=screens.field_error(svc.policy.steps.get(reply.step_id), problem))
    except BotError as refusal:  # not registered, not authorised (audited), someone else answered first
        return note_card(str(refusal))
    return render_card(screen, submit=submit, nonce=nonce())


async def guarded(svc: Services, ctx: Ctx, make: Callable[[Person], Awaitable[Screen]], *,
                  submit: Submit) -> dict[str, Any]:
    """The screen `make` gives this person, or a note saying why not."""
    try:
        screen = await make(await who(svc, ctx))
    except BotError as refusal:
        return note_card(str(refusal))
    return render_card(screen, submit=submit, nonce=nonce())


async def done(svc: Services, ctx: Ctx, act: Callable[[Person], Awaitable[Any]], said: str) -> dict[str, Any]:
    """Do `act` for this person and say `said`, or say why not."""
    try:
        await act(await who(svc, ctx))
    except BotError as refusal:
        return note_card(str(refusal))
    return note_card(said)
