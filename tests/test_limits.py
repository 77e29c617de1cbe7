"""Nothing the person typed is lost: the limit a form shows is the limit the bot enforces, on
what was typed, and a stored (encrypted) answer is never checked against it again."""

from __future__ import annotations

import pytest

from bot import cases, views
from bot.cases import Person, Services
from bot.checklist import text_limit
from bot.errors import InvalidAnswer
from bot.policy.model import FieldType
from handlers.slack.modals import step_modal
from storage.models import CaseEvent
from tests.conftest import england
from tests.test_cases import answer, rows

POLICY = england()
TEXT_TYPES = (FieldType.TEXT, FieldType.LONGTEXT)


def test_every_text_field_of_the_policy_shows_the_limit_the_bot_enforces() -> None:
    checked = 0
    for step in POLICY.steps.values():
        if not step.fields:
            continue
        blocks = {b.get("block_id"): b for b in step_modal(step, view=None, policy=POLICY)["blocks"]}
        for f in step.fields:
            if f.type in TEXT_TYPES:
                assert blocks[f.key]["element"]["max_length"] == text_limit(f), (step.id, f.key)
                checked += 1
    assert checked >= 20


async def test_answers_at_the_limit_are_kept_whole_through_encryption_and_replay(services: Services,
                                                                                 school: dict[str, Person]) -> None:
    concern = POLICY.steps["concern"]
    typed: dict[str, str] = {f.key: "ب" * text_limit(f) for f in concern.fields  # Arabic: 2 bytes each
                             if f.type in TEXT_TYPES}
    typed.update(year_group="year_4", seen_at="2026-11-24T09:10:00+00:00", child_dob="2016-05-01")
    view = await cases.raise_concern(services, actor=school["teacher"], values={"immediate_danger": "no"},
                                     platform="test")
    view = await answer(services, school["teacher"], view, typed)
    view = await answer(services, school["teacher"], view, {"staff_threshold": "unsure"})  # replays the above
    assert view.status == "awaiting_decision"
    details = await views.open_details(services, actor=school["dsl"], case_ref=view.ref)
    assert {k: details.facts[k] for k in typed} == typed


async def test_one_character_over_the_limit_is_refused_naming_the_limit_and_nothing_is_saved(
        services: Services, school: dict[str, Person]) -> None:
    view = await cases.raise_concern(services, actor=school["teacher"], values={"immediate_danger": "no"},
                                     platform="test")
    with pytest.raises(InvalidAnswer, match="longer than 3000 characters"):
        await answer(services, school["teacher"], view, {"child": "A", "year_group": "year_4", "concern": "y" * 3001,
                                                          "seen_at": "2026-11-24T09:10:00+00:00"})
    assert len(await rows(services, CaseEvent)) == 1
