"""Cards in the chat (Universal Actions, `adaptiveCard/action`): the answer is the card that
replaces the clicked one. Open the step waiting for the clicker and answer it (a DSL decides
here; the first decision wins, the loser is told), acknowledge an urgent alert, snooze a routine
reminder, or refresh a card to where its case stands now.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot import ack, screens, views
from bot.cases import Person, Services
from bot.errors import BotError
from bot.screens import Screen
from handlers.teams.cards import invoke_card_response, render_card, render_snooze_card
from handlers.teams.common import Ctx, answer, done, guarded, nonce, note_card, value_of, who
from handlers.teams.parse import card_data, parse_snooze


def on_card_action(svc: Services) -> Callable[[Ctx], Awaitable[Any]]:
    """The handler for every Action.Execute."""

    async def handler(ctx: Ctx) -> Any:  # a dict: the SDK sends it as the invoke's body
        action = value_of(ctx).get("action")
        action = action if isinstance(action, dict) else {}
        return invoke_card_response(await _verb(svc, ctx, str(action.get("verb") or ""), action.get("data")))

    return handler


async def _verb(svc: Services, ctx: Ctx, verb: str, data: Any) -> dict[str, Any]:
    ref = card_data(data).case_ref or ""
    if verb == "step":
        return await answer(svc, ctx, data, submit="execute")
    if verb == "open":
        return await guarded(svc, ctx, lambda me: _waiting(svc, me, ref), submit="execute")
    if verb == "refresh":
        return await _refreshed(svc, ctx, ref)
    if verb == "acknowledge":
        return await done(svc, ctx, lambda me: ack.acknowledge(svc, actor=me, case_ref=ref),
                          f"You have case {ref}. The escalation to others has stopped.")
    if verb == "snooze":
        reasons, durations = ack.snooze_options(svc)
        return render_snooze_card(ref, reasons, durations, nonce())
    if verb == "snooze_save":
        asked = parse_snooze(data)
        return await done(svc, ctx, lambda me: ack.snooze(svc, actor=me, case_ref=asked.case_ref, reason=asked.reason,
                                                          minutes=asked.minutes),
                          f"Reminders for case {asked.case_ref} are snoozed.")
    return note_card("This card is out of date. Type **cases** to see your cases.")


async def _waiting(svc: Services, me: Person, ref: str) -> Screen:
    """The step waiting for the clicker (no details in a chat card: those open in a dialog)."""
    return await screens.next_screen(svc, me, await views.status_of(svc, actor=me, case_ref=ref))


async def _refreshed(svc: Services, ctx: Ctx, ref: str) -> dict[str, Any]:
    """A card refreshing itself: where the case stands now (decided, or still waiting)."""
    try:
        case = await views.status_of(svc, actor=await who(svc, ctx), case_ref=ref)
    except BotError as refusal:
        return note_card(str(refusal))
    return render_card(screens.note_screen(screens.where_now(svc.policy, case), case), submit="execute",
                       nonce=nonce())
