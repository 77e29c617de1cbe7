"""Every attempt is logged from the terminal too: a teacher opening a case that waits on a DSL
decision, and a DSL who loses a race to a colleague, each leave an access-log entry naming them."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Callable

import pytest

from bot import cases
from bot.cases import Person, Services
from bot.errors import Conflict
from handlers.console import Console
from storage.db import create_database
from storage.models import AccessLog
from tests.test_cases import rows
from tests.test_chronology import walk_until_dsl

People = dict[str, Person]


class Typist(io.StringIO):
    """Standard input typed line by line; just before line `at` is read, `meanwhile` runs (a colleague acts)."""

    def __init__(self, lines: list[str], *, at: int, meanwhile: Callable[[], None]) -> None:
        super().__init__()
        self.lines, self.at, self.meanwhile, self.read = lines, at, meanwhile, 0

    def readline(self, size: int | None = -1) -> str:  # noqa: ARG002 - the console reads whole lines
        if self.read == self.at:
            self.meanwhile()
        self.read += 1
        return self.lines[self.read - 1] + "\n" if self.read <= len(self.lines) else ""


def in_another_process(svc: Services, work: Callable[[Services], object]) -> Callable[[], None]:
    """Run `work` on its own connection and event loop, as a colleague's session would."""
    url = svc.db.engine.url.render_as_string(hide_password=False)

    def run() -> None:
        async def go() -> None:
            other = Services(db=create_database(url), keyring=svc.keyring, policy=svc.policy, clock=svc.clock)
            try:
                await work(other)  # type: ignore[misc]
            finally:
                await other.db.dispose()
        thread = threading.Thread(target=asyncio.run, args=(go(),))
        thread.start()
        thread.join()
    return run


async def test_a_teacher_opening_a_case_on_a_dsl_step_is_told_and_logged(services: Services, school: People) -> None:
    view = await walk_until_dsl(services, school)
    out = io.StringIO()
    code = await Console(services, io.StringIO(""), out).session(email="tina@oak.sch.uk", case_ref=view.ref)
    said = out.getvalue()
    assert code == 0 and "== Confirm the threshold ==" not in said  # not offered
    assert (f"Case {view.ref} is waiting for 'Confirm the threshold', which only a Designated Safeguarding Lead or "
            "Deputy DSL can answer, so it is not offered to you here. This attempt has been recorded.") in said
    [entry] = [a for a in await rows(services, AccessLog) if a.action == "refused"]
    assert entry.actor_id == school["teacher"].id and json.loads(entry.detail)["step"] == "dsl_threshold"


async def test_a_dsl_who_loses_the_race_in_the_terminal_is_told_who_won_and_logged(services: Services,
                                                                                  school: People) -> None:
    view = await walk_until_dsl(services, school)

    async def deputy_decides(other: Services) -> None:
        await cases.answer(other, actor=school["deputy"], case_ref=view.ref, version=view.version,
                           step="dsl_threshold", values={"threshold": "significant_harm"}, platform="slack")

    typed = Typist(["2", ""], at=1, meanwhile=in_another_process(services, deputy_decides))  # early help; then, meanwhile...
    with pytest.raises(Conflict) as lost:
        await Console(services, typed, io.StringIO()).session(email="dee@oak.sch.uk", case_ref=view.ref)
    assert str(lost.value).startswith(f"Case {view.ref} has moved on since you opened it")
    assert "Pat Deputy answered 'Confirm the threshold' (Significant harm" in str(lost.value)
    [entry] = [a for a in await rows(services, AccessLog) if a.action == "stale_answer"]
    assert entry.actor_id == school["dsl"].id
    assert json.loads(entry.detail) == {"seen_version": view.version, "step": "dsl_threshold",
                                        "version": view.version + 1}
