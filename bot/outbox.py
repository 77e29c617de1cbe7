"""Reading the outbox for the terminal: the notifications an action queued."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, update
from sqlmodel import col, select

from bot.cases import Services
from bot.messages import Message, render_text
from storage.models import OutboxMessage, Staff


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
        return int((await s.execute(select(func.max(OutboxMessage.id)))).scalar() or 0)


async def notices_after(svc: Services, *, after_id: int) -> list[Notice]:
    """Notifications queued after `after_id`. Terminal ones count as delivered once shown."""
    async with svc.db.transaction() as s:
        rows = (await s.execute(select(OutboxMessage, Staff).join(Staff, col(Staff.id) == OutboxMessage.recipient_id)
                                .where(col(OutboxMessage.id) > after_id).order_by(col(OutboxMessage.id)))).all()
        console_ids = [m.id for m, _ in rows if m.platform == "console"]
        if console_ids:
            await s.execute(update(OutboxMessage).where(col(OutboxMessage.id).in_(console_ids))
                            .values(status="sent", sent_ref="console", sent_at=svc.clock()))
    return [Notice(recipient=staff.display_name, role=svc.policy.role_label(staff.role), platform=m.platform,
                   text=render_text(Message.from_json(m.payload))) for m, staff in rows]
