"""`consentbot export REF --format pdf`: the consent decision record for the school file and the
referral, checked by extracting its text: every field GUIDANCE.md records per decision, as words;
the child's name in the file and in no log line."""

from __future__ import annotations

import asyncio
import io
import os
import re
from pathlib import Path

import pytest
from pypdf import PdfReader

from bot import cases
from bot.cases import Services
from bot.crypto import Keyring
from bot.pdf import drawable, render_pdf
from bot.readable import code_values
from bot.record import decision_record
from storage.db import create_database
from tests.cli.harness import Bot, setup_school
from tests.completed_case import CANARY_CHILD, complete
from tests.conftest import england
from tests.test_record_readable import CASE, NAMES, refused_facts

# GUIDANCE "What is recorded per decision", each as the words the PDF must hold.
REQUIRED = {
    "case reference": ["Case reference"],
    "child": ["Child", CANARY_CHILD],
    "who raised it and when": ["Raised by", "Tina Teacher, "],
    "threshold": ["Threshold confirmed", "Significant harm, or risk of it (must be shared)"],
    "immediate-danger flag": ["Immediate danger"],
    "who decided, who was consulted": ["Decided by", "Dee DSL, ", "Consulted", "Police duty officer"],
    "consent model used": ["Consent model used", "Seek the parents' consent"],
    "who was asked or told, how, when, by whom": ["Who was asked or told", "Mother (Jane)", "Phone",
                                                  "Tue 24 Nov 2026, 12:00", "Recorded by"],
    "outcome and their views": ["Consent refused", "Angry; refuses", "Wants Gran told"],
    "reason codes for not asking plus free text": ["Reasons not to ask or tell", "Details of the reasons"],
    "decision and its necessity": ["Shared in full", "Risk of significant harm", "Duty to refer overrides refusal"],
    "legal references": ["UK GDPR Art 6(1)(e) public task", "Children Act 1989 s47",
                         "Legal references are shown for reference only. They are not legal advice."],
    "what was shared, to whom, when, how, agency reference": [
        "Concern summary and attendance", "Children's social care", "Tue 24 Nov 2026, 15:00",
        "Referral form or portal", "CSC-4471"],
    "DSL approval (who, when, on which platform)": ["Sharing without consent approved by (DSL)", "(Slack)"],
    "review date": ["Review date", "Tue 8 Dec 2026"],
    "policy file name and version": ["Policy", "england version"],
    "the referral form's consent section (S10)": ["Referral form: consent section",
                                                  "Mother (Jane) was asked for consent by phone on Tue 24 Nov 2026,"],
}


def text_of(pdf: bytes) -> str:
    """The PDF's text, one space for any run of whitespace (table cells wrap)."""
    pages = PdfReader(io.BytesIO(pdf)).pages
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in pages))


async def _completed(bot: Bot) -> str:
    svc = Services(db=create_database(bot.database_url), keyring=Keyring.parse(bot.key), policy=england())
    try:
        teacher, dsl = [await cases.identify(svc, email=email) for email in ("tina@oak.sch.uk", "dee@oak.sch.uk")]
        return (await complete(svc, teacher=teacher, dsl=dsl)).ref
    finally:
        await svc.db.dispose()


@pytest.fixture
def bot(sqlite_url: str, tmp_path: Path) -> Bot:
    b = Bot(database_url=sqlite_url, workdir=tmp_path)  # real processes: their logs are what is checked
    setup_school(b)
    return b


@pytest.fixture
def bot_here(sqlite_url: str, tmp_path: Path) -> Bot:
    """The commands in this process: for what they print and write, not their logs."""
    b = Bot(database_url=sqlite_url, workdir=tmp_path, in_process=True)
    setup_school(b)
    return b


def test_the_pdf_holds_every_recorded_field_in_words_and_the_child_only_in_the_file(bot: Bot, tmp_path: Path) -> None:
    ref = asyncio.run(_completed(bot))
    out = tmp_path / "record.pdf"
    done = bot.run("export", ref, "--format", "pdf", "--out", str(out))
    pdf = out.read_bytes()
    assert pdf.startswith(b"%PDF-") and oct(os.stat(out).st_mode & 0o777) == "0o600"
    text = text_of(pdf)
    missing = {field: [w for w in want if w not in text] for field, want in REQUIRED.items()}
    assert not {k: v for k, v in missing.items() if v}, f"not in the PDF: {missing}"
    assert ref in text and CANARY_CHILD in text  # the record for the school file names the child
    # Codes that could be nothing but codes (a bare "phone" or "refused" is also an English word).
    codes = [c for c in code_values(england()) if "_" in c and c in text]
    assert not codes, f"codes in the PDF: {codes}"
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text)  # times in words, never ISO
    logs = done.stderr + done.stdout
    assert f"wrote {out}" in done.stderr  # the command's own output and its log lines (at DEBUG) were captured
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO) bot\.", done.stderr, re.M)
    for part in (CANARY_CHILD, *CANARY_CHILD.replace("-", " ").split()):
        assert part not in logs, f"{part!r} in the command's log"


def test_the_pdf_goes_to_ref_pdf_by_default_and_is_logged_as_a_pdf_export(bot_here: Bot, tmp_path: Path) -> None:
    bot = bot_here
    ref = asyncio.run(_completed(bot))
    bot.run("export", ref, "--format", "pdf")
    assert (tmp_path / f"{ref}.pdf").read_bytes().startswith(b"%PDF-")
    shown = bot.run("audit", "show", "--case", ref).stdout
    assert any("\texported\t" in line and "pdf" in line for line in shown.splitlines()), shown


def test_characters_the_built_in_fonts_lack_are_substituted_not_a_crash() -> None:
    assert drawable("Zoë “Zeb” O’Neil — 李 ☃") == "Zoë \"Zeb\" O'Neil - ? ?"
    record = decision_record(england(), CASE, refused_facts(child="Zoë Ōkubo 李小龍 🙂"), NAMES)
    assert "Child Zoë Okubo ??? ?" in text_of(render_pdf(record))


def test_an_unknown_format_is_refused(bot_here: Bot) -> None:
    done = bot_here.run("export", "C-NOPE", "--format", "docx", check=False)
    assert done.returncode != 0 and "json, csv or pdf" in done.stdout + done.stderr
