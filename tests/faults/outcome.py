"""What a scenario held, counted from the posts the fake Slack recorded (by the outbox dedupe key each
post carries in its metadata) against the messages the outbox accepted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlmodel import select

from bot.cases import Services
from bot.messages import Message
from bot.sender import is_urgent
from storage.models import OutboxMessage

COLUMNS = (("backend", "<10"), ("scenario", "<22"), ("faults injected", "<64"), ("queued", ">6"),
           ("delivered", ">9"), ("doubled", ">7"), ("lost", ">4"), ("urgent", ">7"), ("urgent +s", ">9"),
           ("wall s", ">7"))


@dataclass(frozen=True)
class Row:
    """One scenario's figures. `faults`: how many faults were injected; `said`: which, in words."""

    backend: str
    scenario: str
    faults: int
    said: str
    queued: int
    delivered: int
    doubled: int  # posts beyond one per queued message (a second copy, or a post nothing queued)
    lost: int  # queued, never posted
    urgent_delivered: int
    urgent_queued: int
    urgent_last: float  # seconds from the fault's end (or the burst's start) until the last urgent one landed
    wall: float

    @property
    def held(self) -> bool:
        """Nothing lost, nothing doubled, every urgent message delivered."""
        return self.doubled == 0 and self.lost == 0 and self.urgent_delivered == self.urgent_queued

    def line(self) -> str:
        """The row as the table prints it."""
        cells = (self.backend, self.scenario, self.said, self.queued, self.delivered, self.doubled, self.lost,
                 f"{self.urgent_delivered}/{self.urgent_queued}", f"{self.urgent_last:.1f}", f"{self.wall:.1f}")
        return " ".join(f"{cell:{spec}}" for cell, (_, spec) in zip(cells, COLUMNS, strict=True))


def header() -> str:
    """The table's header line."""
    return " ".join(f"{name:{spec}}" for name, spec in COLUMNS)


async def count(svc: Services, posted: Counter[str], landed: dict[str, float], *, since: float, backend: str,
                scenario: str, faults: int, said: str, wall: float) -> Row:
    """The row for one run: `posted` counts the posts by dedupe key, `landed` says when the first of
    each landed (monotonic, like `since`); the outbox says what was queued.
    """
    async with svc.db.transaction() as s:
        queued = dict((await s.execute(select(OutboxMessage.dedupe_key, OutboxMessage.payload))).all())
    urgent = {key for key, payload in queued.items() if is_urgent(Message.from_json(payload))}
    delivered = {key for key in queued if posted[key]}
    return Row(backend=backend, scenario=scenario, faults=faults, said=said, queued=len(queued),
               delivered=len(delivered), doubled=sum(posted.values()) - len(delivered),
               lost=len(queued) - len(delivered), urgent_delivered=len(urgent & delivered), urgent_queued=len(urgent),
               urgent_last=max((landed[key] - since for key in urgent & delivered), default=0.0), wall=wall)
