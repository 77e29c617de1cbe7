"""Children: every concern about one child forms a chronology (G5: monitor, re-escalate).

A case is joined to its child when the step naming the child is answered: the school's child
with the same name (compared by a keyed blind index, never by decrypting every row) and a date
of birth that does not differ, else a new child record. A concern raised from an earlier case
(a re-escalation) is about that case's child, whatever spelling is typed later.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.cases import Person, Services, at_case, case_for
from bot.crypto import Keyring
from bot.errors import NotAuthorised
from bot.policy.model import Policy, Step
from storage import children as store
from storage.audit import append_access
from storage.models import Case, Child

DEFAULT_FIELDS = {"name": "child", "date_of_birth": "child_dob"}


def child_fields(svc: Services) -> dict[str, str]:
    """The policy's fact keys for the child's name and date of birth (`settings.child_record`)."""
    return {**DEFAULT_FIELDS, **dict(svc.policy.settings.get("child_record") or {})}


def normalised(name: str) -> str:
    """A name as compared: case and spacing do not make a different child."""
    return " ".join(name.casefold().split())


def name_indexes(keyring: Keyring, school_id: int, name: str) -> dict[str, str]:
    """The blind index of a school's child name under every key id of the ring (so a rotated
    ring still finds children indexed under an older key).
    """
    text = f"{school_id}\n{normalised(name)}".encode()
    return {kid: hmac.new(keyring.derived("child-index", kid=kid), text, hashlib.sha256).hexdigest()
            for kid in keyring.keys}


async def join_child(svc: Services, s: AsyncSession, case: Case, step: Step, clean: dict[str, Any]) -> Child | None:
    """When `step` names the child, the child record (found or made) to join the case to: the
    caller writes its id with the answer's projection, whose version check also makes the join
    happen once (a case's child is never changed after), and names it in the answer's event.
    None when the step does not name a child, or the case is joined already.
    """
    fields = child_fields(svc)
    name = clean.get(fields["name"])
    if case.child_id is not None or step.field(fields["name"]) is None or not name:
        return None
    return await _child_named(svc, s, case.school_id, str(name), clean.get(fields["date_of_birth"]))


async def _child_named(svc: Services, s: AsyncSession, school_id: int, name: str, born: Any) -> Child:
    indexes = name_indexes(svc.keyring, school_id, name)
    for child in await store.find_child(s, school_id=school_id, name_indexes=indexes.values()):
        if born is None or child.date_of_birth is None or _decrypt_born(svc, child) == str(born):
            return child
    active = svc.keyring.active
    context = f"child:{school_id}:{indexes[active]}"
    return await store.insert_child(s, Child(
        ref="", school_id=school_id, name=svc.keyring.encrypt(name, context=context + ":name"),
        date_of_birth=svc.keyring.encrypt(str(born), context=context + ":dob") if born else None,
        name_index=indexes[active], index_key_id=active, created_at=svc.clock()))


def _decrypt_born(svc: Services, child: Child) -> str | None:
    if child.date_of_birth is None:
        return None
    return svc.keyring.decrypt(child.date_of_birth, context=f"child:{child.school_id}:{child.name_index}:dob")


def child_name(svc: Services, child: Child) -> str:
    """The child's name, decrypted (for an authorised person's view only)."""
    return svc.keyring.decrypt(child.name, context=f"child:{child.school_id}:{child.name_index}:name")


def child_born(svc: Services, child: Child) -> str | None:
    """The child's date of birth, decrypted, if recorded."""
    return _decrypt_born(svc, child)


async def earlier_case(s: AsyncSession, actor: Person, ref: str) -> Case:
    """The case a new concern is raised from: one this person may see (another school's is 'not found')."""
    earlier = await case_for(s, actor, ref)
    actor = at_case(actor, earlier)
    if not (actor.is_decider or actor.id in (earlier.raised_by, earlier.assignee_id)):
        raise NotAuthorised(f"You cannot raise a concern from case {earlier.ref}: you did not raise it and are not "
                            "its DSL. Raise a new concern instead. This attempt has been recorded.",
                            audit={"actor_id": actor.id, "school_id": actor.school_id, "case_id": earlier.id,
                                   "detail": {"step": "link", "role": actor.role}})
    return earlier


def link_kind(policy: Policy, earlier: Case) -> str:
    """A concern raised from a case closed without sharing re-escalates it (G5); else it is linked."""
    end = policy.steps.get(earlier.step)
    return "re_escalation" if earlier.status == "closed" and end is not None and not end.shared else "linked"


async def note_link(svc: Services, s: AsyncSession, case: Case, earlier: Case) -> None:
    """Log, on the chained access log, that `case` was raised from `earlier` (both refs, the kind)."""
    await append_access(s, action="case_linked", at=svc.clock(), school_id=case.school_id, case_id=case.id,
                        detail={"from": earlier.ref, "kind": link_kind(svc.policy, earlier)})
