"""A canary child name never reaches the database file, a log line or a notification;
tampering with one stored byte is caught by `consentbot audit verify`; refusals are audited."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.cli.harness import Bot, case_ref, setup_school
from tests.cli.test_chat_paths import CONSENT, DSL, FOLLOW_UP, NO_REASON, SHARE, TEACHER, UNDERSTANDS

CANARY = "Quillon Marchbanks-Oyelaran"
CANARY_WORDS = ("Quillon", "Marchbanks", "Oyelaran")


@pytest.fixture
def bot(sqlite_url: str, tmp_path: Path) -> Bot:
    """Real processes: their logs, at DEBUG, are what is searched for the canary."""
    b = Bot(database_url=sqlite_url, workdir=tmp_path)
    setup_school(b, through_cli=True)  # once in the suite, the way an IT person sets up
    return b


def db_file(bot: Bot) -> Path:
    return Path(bot.database_url.removeprefix("sqlite+aiosqlite:///"))


def run_whole_story(bot: Bot) -> str:
    ref = case_ref(bot.chat(TEACHER, "1", "2", CANARY, "", "6", f"{CANARY} said her stepdad hit her", "2026-11-24 08:40",
                            "1"))  # no date of birth given; 6) Year 4
    bot.chat(DSL, "2", "1", "", *NO_REASON, TEACHER, "")
    bot.chat(TEACHER, "2", *CONSENT, "2", f"Refused; {CANARY}'s mum is angry", UNDERSTANDS, f"{CANARY} is scared")
    bot.chat(DSL, "2", f"Refused, but {CANARY} is at risk", "1", *SHARE, *FOLLOW_UP)
    return ref


def test_canary_name_is_in_no_database_byte_log_line_or_notification(bot: Bot) -> None:
    ref = run_whole_story(bot)
    assert bot.export(ref)["child"] == CANARY  # the record holds it, decrypted for an authorised export
    raw = b"".join(p.read_bytes() for p in db_file(bot).parent.glob(db_file(bot).name + "*") if p.suffix != ".key")
    for word in CANARY_WORDS:
        assert word.encode() not in raw, f"{word} found in the database files"
        assert word.encode("utf-16-le") not in raw
    logs = "\n".join(bot.stderr)
    assert "DEBUG" in logs and f"case={ref}" in logs  # the logs were captured at the most verbose level
    notifications = bot.notifications()
    assert len(notifications) >= 8
    for word in CANARY_WORDS:
        assert word not in logs, f"{word} in a log line"
        assert all(word not in n for n in notifications), f"{word} in a notification"
    verified = bot.run("audit", "verify")  # the untouched database verifies
    assert verified.stdout.endswith(": ok\n") and "FAIL" not in verified.stdout


def tamper(bot: Bot, sql: str) -> None:
    with sqlite3.connect(db_file(bot)) as conn:
        conn.executescript(sql)


@pytest.fixture(scope="module")
def assigned_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Bot, str]:
    """One case, raised and assigned, built once; each tampering test works on a copy. The commands
    run in this process (what they print is checked, not their logs).
    """
    workdir = tmp_path_factory.mktemp("story")
    bot = Bot(database_url=f"sqlite+aiosqlite:///{workdir}/test.db", workdir=workdir, in_process=True)
    setup_school(bot)
    ref = case_ref(bot.chat(TEACHER, "1", "2", CANARY, "", "6", "text", "2026-11-24 08:40", "1"))
    bot.chat(DSL, "2", "1", "", *NO_REASON, TEACHER, "")
    return bot, ref


@pytest.mark.parametrize("change", [
    # one byte of one stored event's payload
    "UPDATE case_events SET payload = replace(payload, '\"platform\":\"console\"', '\"platform\":\"consolf\"') "
    "WHERE seq = 3",
    # one event removed (the last, so only the head check can see it)
    "DELETE FROM case_events WHERE seq = (SELECT max(seq) FROM case_events)",
    # two events swapped
    "UPDATE case_events SET seq = -1 WHERE seq = 2; UPDATE case_events SET seq = 2 WHERE seq = 3; "
    "UPDATE case_events SET seq = 3 WHERE seq = -1",
    # the case row changed in place
    "UPDATE cases SET status = 'closed'",
], ids=["altered", "removed", "reordered", "projection"])
def test_tampering_fails_verify_and_names_the_case(assigned_case: tuple[Bot, str], tmp_path: Path,
                                                   change: str) -> None:
    original, ref = assigned_case
    for part in db_file(original).parent.glob(db_file(original).name + "*"):
        shutil.copy(part, tmp_path / part.name)
    bot = Bot(database_url=f"sqlite+aiosqlite:///{tmp_path / db_file(original).name}", workdir=tmp_path,
              key=original.key, in_process=True)
    tamper(bot, "PRAGMA foreign_keys=OFF; " + change)
    done = bot.run("audit", "verify", check=False)
    assert done.returncode == 1
    assert f"FAIL case {ref}" in done.stdout
    assert "FAILED" in done.stdout


def test_non_dsl_deciding_is_refused_and_the_refusal_audited(sqlite_url: str, tmp_path: Path) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, in_process=True)
    setup_school(bot)
    bot.run("staff", "add", "tom@oak.sch.uk", "--role", "staff", "--name", "Tom Teacher", "--school", "oak")
    ref = case_ref(bot.chat(TEACHER, "1", "2", CANARY, "", "6", "text", "2026-11-24 08:40", "1"))
    own = bot.chat(TEACHER, case=ref)  # the raiser may open it, but the decision is not theirs
    assert "waiting for Designated Safeguarding Lead: Confirm the threshold" in own
    assert "== Confirm the threshold ==" not in own
    other = bot.run("chat", "--as", "tom@oak.sch.uk", "--case", ref, stdin="1\n", check=False)
    assert other.returncode == 1
    assert f"You are not authorised to see the details of case {ref}. This attempt has been recorded." in other.stderr
    log = bot.run("audit", "show", "--case", ref).stdout
    assert "refused" in log and "staff=4" in log
    assert bot.run("audit", "verify").returncode == 0
