"""Acknowledging an urgent alert, and snoozing a case's reminders.

Neither changes what happened on the case, so neither appends to the case's event chain;
both write an access-log entry (ids and codes only) so the trail shows who silenced what, and why.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from bot import notify
from bot.cases import Person, Services, at_case, refusals_logged
from bot.errors import Conflict, InvalidAnswer, NotAuthorised, NotFound
from storage import reminder_repo, repo
from storage.audit import append_access
from storage.models import Case

logger = logging.getLogger(__name__)
ACKNOWLEDGED = "urgent_acknowledged"
SNOOZED = "reminders_snoozed"


async def acknowledge(svc: Services, *, actor: Person, case_ref: str) -> int:
    """A DSL or deputy of the case's school takes an urgent alert: the urgent ladder stops.

    Returns how many pending escalations were cancelled.
    """
    async with refusals_logged(svc), svc.db.transaction() as s:
        case = await _case_for(s, actor, case_ref)
        actor = at_case(actor, case)
        if not actor.is_decider:
            raise _refusal(actor, case, "acknowledge")
        stopped = await reminder_repo.cancel(s, case_id=case.id or 0, kinds=[notify.URGENT_ACK_REMINDER])
        await append_access(s, action=ACKNOWLEDGED, at=svc.clock(), actor_id=actor.id, school_id=case.school_id,
                            case_id=case.id, detail={"cancelled": stopped})
    logger.info("case=%s urgent alert acknowledged by=%s cancelled=%s", case.ref, actor.id, stopped)
    return stopped


async def snooze(svc: Services, *, actor: Person, case_ref: str, reason: str, minutes: int) -> int:
    """Put a routine case's pending outcome reminders back by `minutes`, for a policy reason code.

    The policy caps the minutes and the number of snoozes per case. Returns how many moved.
    """
    rules = _snooze_rules(svc)
    _check_snooze(rules, reason, minutes)
    async with refusals_logged(svc), svc.db.transaction() as s:
        case = await _case_for(s, actor, case_ref)
        actor = at_case(actor, case)
        if not (actor.is_decider or actor.id == case.assignee_id):
            raise _refusal(actor, case, "snooze")
        if case.urgent:
            raise Conflict(f"Case {case.ref} is urgent: its reminders cannot be snoozed.")
        done = await reminder_repo.access_count(s, case_id=case.id or 0, action=SNOOZED)
        if done >= int(rules["max_times"]):
            raise Conflict(f"Case {case.ref} has been snoozed {done} times, the most the policy allows.")
        rows = await reminder_repo.pending_for_case(s, case_id=case.id or 0, kinds=[notify.OUTCOME_REMINDER])
        await reminder_repo.finish(s, sent=[], cancelled=[], now=svc.clock(),
                                   deferred=[(r.id or 0, r.due_at + timedelta(minutes=minutes)) for r in rows])
        await append_access(s, action=SNOOZED, at=svc.clock(), actor_id=actor.id, school_id=case.school_id,
                            case_id=case.id, detail={"reason": reason, "minutes": minutes, "moved": len(rows)})
    logger.info("case=%s reminders snoozed by=%s minutes=%s reason=%s", case.ref, actor.id, minutes, reason)
    return len(rows)


SNOOZE_DURATIONS = (60, 240, 1440)  # minutes offered, within the policy's max_minutes


def snooze_options(svc: Services) -> tuple[list[tuple[str, str]], list[int]]:
    """What a snooze form offers: (reason code, label) pairs and durations in minutes, within the cap."""
    rules = svc.policy.settings.get("snooze") or {}
    cap = int(rules.get("max_minutes") or 0)
    return list((rules.get("reasons") or {}).items()), [m for m in SNOOZE_DURATIONS if m <= cap] or [cap]


def _snooze_rules(svc: Services) -> dict[str, Any]:
    rules = svc.policy.settings.get("snooze")
    if not rules:
        raise Conflict("This policy does not allow reminders to be snoozed.")
    return dict(rules)


def _check_snooze(rules: dict[str, Any], reason: str, minutes: int) -> None:
    if reason not in (rules.get("reasons") or {}):
        raise InvalidAnswer(f"Choose a reason: {', '.join(rules.get('reasons') or {})}.", step="snooze", field="reason")
    if not 1 <= minutes <= int(rules["max_minutes"]):
        raise InvalidAnswer(f"Snooze for 1 to {rules['max_minutes']} minutes.", step="snooze", field="minutes")


async def _case_for(s: Any, actor: Person, ref: str) -> Case:
    case = await repo.case_by_ref(s, ref)
    if case is None or actor.role_in(case.school_id) is None:
        raise NotFound(f"No case {ref.strip().upper()} that you can see.")
    return case


def _refusal(actor: Person, case: Case, action: str) -> NotAuthorised:
    return NotAuthorised(f"Only a DSL or deputy of this school can {action} case {case.ref}. "
                         "This attempt has been recorded.",
                         audit={"actor_id": actor.id, "school_id": case.school_id, "case_id": case.id,
                                "detail": {"action": action, "role": actor.role}})
