"""The case window's "Download the record (PDF)": a DSL's request puts the file in that DSL's DM
only (checked on the fake Slack API), and is logged; a member of staff's is refused and logged."""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any

import pytest
from pypdf import PdfReader

from bot.audit import access_entries
from bot.cases import Person
from tests.completed_case import CANARY_CHILD, complete
from tests.slack.conftest import USERS, Driver

EXPORT = "export_pdf"


async def completed(slack: Driver, staff: dict[str, Person]) -> str:
    return (await complete(slack.svc, teacher=staff["teacher"], dsl=staff["dsl"], assignee=staff["assignee"])).ref


async def opened_window(slack: Driver, who: str, ref: str) -> dict[str, Any]:
    """`who` clicks Open on a DM's button: the case window as Slack holds it (with its view id)."""
    before = len(slack.fake.calls_to("views.open"))
    assert (await slack.click(who, ref, channel="D" + USERS[who])).status_code == 200
    calls = slack.fake.calls_to("views.open")
    assert len(calls) == before + 1, "no case window opened"
    return dict(calls[-1].params["view"])


def export_buttons(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in view.get("blocks", []) if b.get("type") == "actions" for e in b["elements"]
            if e.get("action_id") == EXPORT]


async def click_export(slack: Driver, who: str, ref: str, view: dict[str, Any] | None = None) -> None:
    """The button pressed inside the case window (a block action carrying the view, as Slack sends it)."""
    payload = {"type": "block_actions", "trigger_id": slack.trigger(), "user": {"id": USERS[who]},
               "team": {"id": "T0FAKE0001"}, "view": {"id": "V0CASEWIN1", "type": "modal", **(view or {})},
               "actions": [{"type": "button", "action_id": EXPORT, "block_id": f"export:{ref}", "value": ref,
                            "action_ts": str(time.time())}]}
    assert (await slack.interact(payload)).status_code == 200


async def logged(slack: Driver, ref: str) -> list[list[str]]:
    return [line.split("\t") for line in await access_entries(slack.svc, case_ref=ref)]


def pushed_text(slack: Driver) -> str:
    return json.dumps(slack.fake.calls_to("views.push")[-1].params["view"])


async def test_the_dsls_request_sends_the_pdf_to_that_dsl_only_and_is_logged(
        slack: Driver, staff: dict[str, Person], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ref = await completed(slack, staff)
    window = await opened_window(slack, "dsl", ref)
    [button] = export_buttons(window)
    assert button["text"]["text"] == "Download the record (PDF)" and button["value"] == ref

    await click_export(slack, "dsl", ref, window)

    dm = "D" + USERS["dsl"]
    [upload] = slack.fake.uploads()
    assert upload.channels == [dm]  # completed into the DSL's own DM, and nowhere else
    assert [u.id for u in slack.fake.files_in(USERS["dsl"])] == [upload.id]
    assert [c.params["users"] for c in slack.fake.calls_to("conversations.open")] == [USERS["dsl"]]
    assert [c.params.get("channel_id") for c in slack.fake.calls_to("files.completeUploadExternal")] == [dm]
    assert upload.data and upload.data.startswith(b"%PDF-") and upload.filename == f"{ref}.pdf"
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(upload.data)).pages)
    assert ref in text and CANARY_CHILD.split("-")[0] in text  # the record for the school file
    [message] = [m for m in slack.fake.messages_to(dm) if m.get("files")]
    assert message["text"] == f"Consent decision record for case {ref} (PDF)."  # the reference only
    assert f"The record of case {ref} is in your direct messages" in pushed_text(slack)

    # Only the case window (a modal, kept in no history) and the file's bytes hold the child's name.
    every_call = json.dumps([c.params for c in slack.fake.calls if c.method not in ("views.open", "upload")])
    assert "Canary" not in every_call and "Zebedee" not in every_call
    assert "Canary" not in caplog.text and "Zebedee" not in caplog.text
    exported = [row for row in await logged(slack, ref) if row[2] == "exported"]
    assert len(exported) == 1 and exported[0][3] == f"staff={staff['dsl'].id}"
    assert json.loads(exported[0][5]) == {"role": "dsl", "platform": "slack", "format": "pdf"}


async def test_a_member_of_staffs_request_is_refused_and_logged(slack: Driver, staff: dict[str, Person]) -> None:
    ref = await completed(slack, staff)
    window = await opened_window(slack, "teacher", ref)  # the teacher raised it, so may open it
    assert export_buttons(window) == []  # no button offered to staff

    await click_export(slack, "teacher", ref)  # a crafted click: the bot decides, not the button

    assert slack.fake.uploads() == [] and slack.fake.calls_to("files.completeUploadExternal") == []
    assert "can download the record" in pushed_text(slack) and "recorded" in pushed_text(slack)
    rows = await logged(slack, ref)
    assert not [r for r in rows if r[2] == "exported"]
    refused = [r for r in rows if r[2] == "refused" and r[3] == f"staff={staff['teacher'].id}"]
    assert refused and json.loads(refused[-1][5]) == {"step": "export", "role": "staff", "platform": "slack"}


async def test_a_failed_upload_tells_the_dsl_and_shares_nothing(slack: Driver, staff: dict[str, Person]) -> None:
    ref = await completed(slack, staff)
    slack.fake.fail_next("files.completeUploadExternal", status=429, retry_after=1)

    await click_export(slack, "dsl", ref)

    assert all(not u.channels for u in slack.fake.uploads())
    assert f"The record of case {ref} could not be sent" in pushed_text(slack)

