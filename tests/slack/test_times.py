"""Slack messages show times with Slack's date formatting, so each reader sees their own time; the
fallback text (notifications, old clients) says the time in words in the school's time."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.cases import CaseView
from bot.messages import Kind, Message
from handlers.slack.blocks import case_line, render_message


def test_a_due_time_is_a_slack_date_token_with_the_schools_time_as_fallback() -> None:
    due = "2026-06-24T15:00+01:00"  # the school's time (BST), as the outbox holds it
    text, blocks = render_message(Message(kind=Kind.ACTION_ASSIGNED, case_ref="C-42", step_title="Record & tell",
                                          due_at=due))
    stamp = int(datetime(2026, 6, 24, 14, 0, tzinfo=UTC).timestamp())
    assert text == "You are asked to act on concern C-42: Record & tell, due Wed 24 Jun 2026, 15:00."
    assert blocks[0]["text"]["text"] == (f"You are asked to act on concern C-42: Record &amp; tell, due "
                                         f"<!date^{stamp}^{{date_short_pretty}} {{time}}|Wed 24 Jun 2026, 15:00>.")


def test_who_decided_and_when_reads_in_each_readers_time() -> None:
    text, blocks = render_message(Message(kind=Kind.DECIDED, case_ref="C-42", by="Dee DSL",
                                          at="2026-11-30T14:05+00:00"))
    assert text == "Concern C-42: decided by Dee DSL at Mon 30 Nov 2026, 14:05."
    assert "at <!date^1796047500^{date_short_pretty} {time}|Mon 30 Nov 2026, 14:05>." in blocks[0]["text"]["text"]


def test_the_home_tabs_due_time_is_a_slack_date_token() -> None:
    due = datetime(2026, 11, 30, 14, 5, tzinfo=UTC)
    view = CaseView(ref="C-42", version=3, status="awaiting_outcome", urgent=False, step=None, outcome=None,
                    assignee_id=1, due_at=due, raised_by=1)
    line = case_line(view)["text"]["text"]
    assert f"due <!date^{int(due.timestamp())}^{{date_short_pretty}} {{time}}|Mon 30 Nov 2026, 14:05>" in line
    assert "2026-11-30T" not in line
