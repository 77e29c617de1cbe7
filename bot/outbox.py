"""Reading the outbox for the terminal: the notifications an action queued."""

from __future__ import annotations

from dataclasses import dataclass

from bot.cases import Services
from bot.messages import Message, render_text
from storage import outbox as queue


@dataclass(frozen=True)
class Notice:
    """A queued notification as the terminal prints it."""

    recipient: str
    role: str
    platform: str
    text: str


async def latest_id(svc: Services) -> int:
    """The newest outbox row's id (0 when empty): notifications after it are new."""
    async with svc.db.transaction() as s:
        return await queue.latest_id(s)


async def notices_after(svc: Services, *, after_id: int) -> list[Notice]:
    """Notifications queued after `after_id`. Terminal ones count as delivered once shown."""
    async with svc.db.transaction() as s:
        rows = await queue.queued_after(s, after_id=after_id)
        await queue.mark_shown(s, [m.id for m, _ in rows if m.platform == "console" and m.id is not None],
                               now=svc.clock())
    return [Notice(recipient=staff.display_name, role=svc.policy.role_label(staff.role), platform=m.platform,
                   text=render_text(Message.from_json(m.payload))) for m, staff in rows]
