"""The buttons that quieten reminders: "Acknowledge" on an urgent alert (a DSL or deputy takes
it and the escalation to others stops) and "Snooze reminders" on a routine outcome reminder
(a form asks why and for how long). The bot checks roles, caps and reasons and writes the access
log, refusals included; here we only translate. Button values and the form's private_metadata
carry the case reference only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import cases
from bot.ack import acknowledge, snooze
from bot.cases import Services
from bot.errors import BotError, InvalidAnswer
from handlers.slack.blocks import ACKNOWLEDGE, SNOOZE, Block, context, escape, option, plain, render_acknowledged, section
from handlers.slack.modals import note_modal
from handlers.slack.open_case import refuse
from handlers.slack.parse import user_id

DURATIONS = (60, 240, 1440)  # minutes offered, within the policy's max_minutes
RADIO_MAX = 10  # Slack's limit for radio_buttons; more reasons become a select
REASON, MINUTES = "reason", "minutes"  # block ids = the bot's InvalidAnswer field names, so errors land in place


@dataclass(frozen=True)
class SnoozeRequest:
    """A submitted snooze form."""

    case_ref: str
    reason: str
    minutes: int


def register(app: AsyncApp, svc: Services) -> None:
    """Acknowledge, and the snooze button and form."""

    @app.action(ACKNOWLEDGE)
    async def on_acknowledge(ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        try:
            me = await cases.identify(svc, slack_user_id=user_id(body))
            await acknowledge(svc, actor=me, case_ref=str(action.get("value") or ""))
        except BotError as refusal:  # a teacher (logged by the bot), another school's case, not registered
            await refuse(client, body, str(refusal))
            return
        await show_acknowledged(client, body, by=me.name, at=svc.clock())

    @app.action(SNOOZE)
    async def on_snooze(ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        try:  # an unregistered person is told so before filling anything in
            await cases.identify(svc, slack_user_id=user_id(body))
        except BotError as refusal:
            await refuse(client, body, str(refusal))
            return
        await client.views_open(trigger_id=body["trigger_id"], view=snooze_modal(svc, str(action.get("value") or "")))

    @app.view(SNOOZE)
    async def on_snooze_submitted(ack: Any, body: dict[str, Any]) -> None:
        asked = parse_snooze(body.get("view") or {})
        try:
            me = await cases.identify(svc, slack_user_id=user_id(body))
            moved = await snooze(svc, actor=me, case_ref=asked.case_ref, reason=asked.reason, minutes=asked.minutes)
        except InvalidAnswer as problem:
            await ack(response_action="errors", errors=snooze_errors(svc, problem))
            return
        except BotError as refusal:  # not the assignee (logged by the bot), snoozed too often, an urgent case
            await ack(response_action="update", view=note_modal(str(refusal)))
            return
        await ack(response_action="update", view=note_modal(snoozed_text(svc, asked, moved)))


async def show_acknowledged(client: AsyncWebClient, body: dict[str, Any], *, by: str, at: datetime) -> None:
    """Rewrite the clicked DM: who acknowledged it and when, without the Acknowledge button."""
    message = body.get("message") or {}
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = container.get("message_ts") or message.get("ts")
    blocks = render_acknowledged(list(message.get("blocks") or []), by=by, at=at)
    if channel and ts:
        await client.chat_update(channel=channel, ts=ts, text=str(message.get("text") or ""), blocks=blocks)
    else:  # not clicked on a message we can rewrite: say it in a window instead
        await client.views_open(trigger_id=body["trigger_id"], view=note_modal("Acknowledged. The escalation to "
                                                                               "others has stopped."))


def snooze_rules(svc: Services) -> dict[str, Any]:
    """The policy's snooze settings (empty: the policy allows no snoozing, and the bot says so)."""
    return dict(svc.policy.settings.get("snooze") or {})


def snooze_modal(svc: Services, case_ref: str) -> dict[str, Any]:
    """The form: a reason from the policy's list and a duration within its cap."""
    rules = snooze_rules(svc)
    reasons = list((rules.get("reasons") or {}).items())
    if not reasons:
        return note_modal("Reminders for this case cannot be snoozed: the school's policy does not allow it.")
    blocks = [context(f"Case *{escape(case_ref)}*"),
              section("Reminders about this case pause for the time you choose. "
                      "Your DSL can see who snoozed them and why."),
              _input(REASON, "Why are you snoozing them?", _choose(reasons)),
              _input(MINUTES, "For how long?", _select(durations(int(rules.get("max_minutes") or 0))))]
    return {"type": "modal", "callback_id": SNOOZE, "private_metadata": case_ref, "title": plain("Snooze reminders", 24),
            "submit": plain("Snooze", 24), "close": plain("Cancel", 24), "blocks": blocks}


def durations(max_minutes: int) -> list[tuple[str, str]]:
    """(minutes, label) pairs up to the cap; the cap itself when it is shorter than all of them."""
    offered = [m for m in DURATIONS if m <= max_minutes] or [max_minutes]
    return [(str(m), duration_text(m)) for m in offered]


def duration_text(minutes: int) -> str:
    """60 → "1 hour", 240 → "4 hours", 1440 → "1 day", 90 → "90 minutes"."""
    amount, unit = next(((minutes // size, name) for size, name in ((1440, "day"), (60, "hour"))
                         if minutes and minutes % size == 0), (minutes, "minute"))
    return f"{amount} {unit}{'' if amount == 1 else 's'}"


def _input(block_id: str, label: str, element: dict[str, Any]) -> Block:
    return {"type": "input", "block_id": block_id, "label": plain(label, 2000),
            "element": {**element, "action_id": block_id}}


def _choose(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    if len(pairs) <= RADIO_MAX:
        return {"type": "radio_buttons", "options": [option(v, label, described=True) for v, label in pairs]}
    return _select(pairs)


def _select(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"type": "static_select", "placeholder": plain("Choose one", 150),
            "options": [option(v, label) for v, label in pairs[:100]]}


def parse_snooze(view: dict[str, Any]) -> SnoozeRequest:
    """The case, reason code and minutes of a submitted form (missing ones empty: the bot says what is needed)."""
    state = (view.get("state") or {}).get("values") or {}

    def chosen(key: str) -> str:
        return str((((state.get(key) or {}).get(key) or {}).get("selected_option") or {}).get("value") or "")

    minutes = chosen(MINUTES)
    return SnoozeRequest(case_ref=str(view.get("private_metadata") or ""), reason=chosen(REASON),
                         minutes=int(minutes) if minutes.isdigit() else 0)


def snooze_errors(svc: Services, problem: InvalidAnswer) -> dict[str, str]:
    """The bot's objection under the field it is about, in words rather than codes."""
    cap = duration_text(int(snooze_rules(svc).get("max_minutes") or 0))
    texts = {REASON: "Choose a reason from the list.", MINUTES: f"Choose how long, at most {cap}."}
    field = problem.field if problem.field in texts else REASON
    return {field: texts[field]}


def snoozed_text(svc: Services, asked: SnoozeRequest, moved: int) -> str:
    """What the person is told once the bot has moved the reminders."""
    if not moved:
        return f"Case {asked.case_ref} has no reminders waiting, so there was nothing to snooze."
    label = (snooze_rules(svc).get("reasons") or {}).get(asked.reason, asked.reason)
    return f"Reminders for case {asked.case_ref} are snoozed for {duration_text(asked.minutes)}. Reason: {label}."
