"""Each main path of the checklist, driven through `consentbot chat` on standard input,
then every field of the exported decision record checked."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest

from bot.readable import code_values
from tests.cli.harness import Bot, case_ref, setup_school
from tests.conftest import england

TEACHER, DSL = "tina@oak.sch.uk", "dee@oak.sch.uk"
CHILD = "Zebedee Canary-Quill"
ANY = object()  # a timestamp or other value the test does not fix
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")
POLICY_CODES = code_values(england())  # every code the policy labels, with its label


def raise_concern(bot: Bot, *, danger: bool, threshold: str) -> str:
    lines = ["1", "1" if danger else "2"]  # the danger question comes first (G1)
    if danger:
        lines.append("1")  # contacted the police on 999
    lines += [*CHILD_DETAILS, "Bruise on arm; said 'dad did it'", "2026-11-24 08:45"]
    lines.append({"significant_harm": "1", "early_help": "2"}[threshold])
    return case_ref(bot.chat(TEACHER, *lines))


CHILD_DETAILS = [CHILD, "2016-05-01", "6"]  # name, date of birth, year group 6) Year 4
UNDERSTANDS = "1"  # "Is the child old enough and able to understand...?" 1) Yes
NO_REASON = ["", "", "", ""]  # no reason not to ask, so no details, and the child's views are asked later


SHARE = ["1", "CSC-4471", "2026-11-24 15:00", "1", "Concern summary and attendance", "1",
         "Risk of significant harm", "1,4"]
FOLLOW_UP = ["2026-11-25", "Strategy discussion held; s47 enquiry", "2026-12-08"]
CONSENT = ["Mother (Jane)", "2", "2026-11-24 12:00"]


class Like:
    """A value matching a pattern (times the test does not fix, but whose form it does)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)

    def __repr__(self) -> str:
        return f"Like({self.pattern.pattern!r})"


HUMAN_TIME = Like(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d$")
WHEN = {"iso": Like(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$"), "label": HUMAN_TIME}


def check(record: dict[str, Any], expected: dict[str, Any], path: str = "") -> None:
    """Every field of `record` equals `expected` (ANY for times); no field unexpected or missing;
    and (at the top) nothing a person reads is a code the policy labels, a raw time, or an id.
    """
    if not path:
        assert_readable(record)
    assert set(record) == set(expected), f"{path}: fields differ: {set(record) ^ set(expected)}"
    for key, want in expected.items():
        got, where = record[key], f"{path}.{key}"
        if want is ANY:
            assert got not in (None, ""), f"{where} should be recorded"
        elif isinstance(want, Like):
            assert isinstance(got, str) and want.pattern.match(got), f"{where}: {got!r} is not {want!r}"
        elif isinstance(want, dict) and isinstance(got, dict):
            check(got, want, where)
        else:
            assert got == want, f"{where}: {got!r} != {want!r}"


def assert_readable(value: Any, where: str = "", key: str = "") -> None:
    """No code where the policy has a label (a code rides beside its label, under "code"), no ISO
    time outside "iso", no bare id: every field a person reads is words.
    """
    if isinstance(value, dict):
        if "code" in value:
            assert set(value) == {"code", "label"} and value["label"] != value["code"], f"{where}: {value}"
        for k, v in value.items():
            assert_readable(v, f"{where}.{k}", k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_readable(v, f"{where}[{i}]", key)
    elif isinstance(value, str) and key not in ("code", "iso", "sha256", "fact"):
        assert value not in POLICY_CODES, f"{where}: {value!r} is a code; the policy labels it {POLICY_CODES[value]!r}"
        assert not ISO.match(value), f"{where}: {value!r} is a raw time"
    else:
        assert not isinstance(value, int | float) or isinstance(value, bool), f"{where}: {value!r} is a bare number"


def code(value: str, label: str) -> dict[str, str]:
    return {"code": value, "label": label}


def at(label: str) -> dict[str, Any]:
    """A time the test fixes, as the school's clock shows it."""
    return {"iso": ANY, "label": label}


def on(iso: str, label: str) -> dict[str, str]:
    return {"iso": iso, "label": label}


def signed(name: str) -> dict[str, Any]:
    return {"by": name, "at": WHEN, "platform": "Terminal"}


SH = code("significant_harm", "The child is suffering, or at risk of suffering, significant harm")
SH_CONFIRMED = code("significant_harm", "Significant harm, or risk of it (must be shared)")
SEEK = code("seek", "Seek the parents' consent")
INFORM_LABEL = "Inform the parents"
PHONE = code("phone", "Phone")


def base_record(ref: str, **over: Any) -> dict[str, Any]:
    """The record fields every path shares, with `over` replacing some."""
    record: dict[str, Any] = {
        "case_ref": ref, "school": "oak", "timezone": "Europe/London", "status": code("closed", "Closed"),
        "outcome": code("shared", "Shared, recorded and followed up"),
        "policy": {"id": "england", "version": ANY, "sha256": ANY},
        "child": CHILD, "child_dob": on("2016-05-01", "Sun 1 May 2016"), "year_group": code("year_4", "Year 4"),
        "understanding": code("yes", "Yes"), "child_views": None,
        "concern": "Bruise on arm; said 'dad did it'", "seen_at": at("Tue 24 Nov 2026, 08:45"),
        "raised": signed("Tina Teacher"), "immediate_danger": code("no", "No"), "emergency_contact": None,
        "threshold": {"staff_view": SH, "confirmed": SH_CONFIRMED, "decided": signed("Dee DSL"), "consulted": None},
        "consent_model": SEEK, "model_chosen": None, "assigned": {"to": None, "due_at": None, "by": None},
        "consent": {"asked_who": None, "asked_how": None, "asked_at": None, "asked": None, "outcome": None,
                    "parent_views": None},
        "reasons_not_to_ask": [], "reasons_text": None, "reasons_decided": signed("Dee DSL"), "not_shared": None,
        "decision": {"decision": code("share", "Shared in full"), "reasons": None,
                     "necessity": "Risk of significant harm", "approval": None},
        "legal_references": [
            code("gdpr_6_1_e", "UK GDPR Art 6(1)(e) public task"),
            code("gdpr_9_2_g_dpa_sch1_18", "UK GDPR Art 9(2)(g), DPA 2018 s10 and Sch 1 Pt 2 para 18 "
                                           "(safeguarding of children and of individuals at risk)")],
        "legal_disclaimer": "Legal references are shown for reference only. They are not legal advice.",
        "shared": {"with": code("childrens_social_care", "Children's social care"), "agency_ref": "CSC-4471",
                   "at": at("Tue 24 Nov 2026, 15:00"), "how": code("referral_form", "Referral form or portal"),
                   "what": "Concern summary and attendance", "recorded": signed("Dee DSL")},
        "follow_up": {"ack_received": on("2026-11-25", "Wed 25 Nov 2026"),
                      "referral_outcome": "Strategy discussion held; s47 enquiry",
                      "review_date": on("2026-12-08", "Tue 8 Dec 2026"), "recorded": signed("Dee DSL")},
        "missing": [], "referral_form": ANY, "signatures": ANY,
    }
    for key, value in over.items():
        record[key] = {**record[key], **value} if isinstance(value, dict) and isinstance(record[key], dict) else value
    return record


@pytest.fixture
def bot(sqlite_url: str, tmp_path: Path) -> Bot:
    """The terminal in this process (typer's runner), on SQLite; `bot_on_each_database` on each database."""
    b = Bot(database_url=sqlite_url, workdir=tmp_path, in_process=True)
    setup_school(b)
    return b


@pytest.fixture
def bot_on_each_database(db_url: str, tmp_path: Path) -> Bot:
    """In this process too, on PostgreSQL when CONSENTBOT_TEST_DATABASE_URL is set as well as on SQLite.
    `consentbot` starts as a process on PostgreSQL in the fault suite (tests/faults) and the replica
    tests (tests/reminders/test_replicas_pg.py), and `chat` as a process in tests/cli/test_privacy_and_audit.py.
    """
    b = Bot(database_url=db_url, workdir=tmp_path, in_process=True)
    setup_school(b)
    return b


def test_immediate_danger_is_shared_without_asking(bot: Bot) -> None:
    out = bot.chat(TEACHER, "1", "1", "1", *CHILD_DETAILS, "Bruise on arm; said 'dad did it'", "2026-11-24 08:45", "1")
    ref = case_ref(out)
    assert out.index("== Is the child in immediate danger? ==") < out.index("== Raise a concern ==")  # G1: asked first
    danger_notice = out.index("Call 999")
    assert danger_notice < out.index("== Who have you contacted? ==")  # said at once, before anything else
    assert danger_notice < out.index("The Designated Safeguarding Lead has been alerted as urgent.")
    assert out.index("[notification to Dee DSL") < out.index("== Who have you contacted? ==")  # queued with the answer
    assert "URGENT: concern" in "\n".join(bot.notifications())
    dsl = bot.chat(DSL, "2", "1", "Police duty officer", "3", "Waiting would leave her at risk tonight",
                   UNDERSTANDS, "Scared; wants to stay with Gran", "Police already involved; delay unsafe", "1",
                   *SHARE, *FOLLOW_UP)
    assert "2) Early help" not in dsl.split("== Confirm the threshold ==")[1].split("==")[0]  # ruled out by danger
    check(bot.export(ref), base_record(
        ref, immediate_danger=code("yes", "Yes"), emergency_contact=code("police_999", "Police (999)"),
        consent_model=None, threshold={"consulted": "Police duty officer"},
        reasons_not_to_ask=[code("undue_delay", "Asking would lead to an unjustifiable delay in making enquiries")],
        reasons_text="Waiting would leave her at risk tonight", child_views="Scared; wants to stay with Gran",
        decision={"reasons": "Police already involved; delay unsafe", "approval": signed("Dee DSL")}))


def test_significant_harm_with_reason_not_to_ask_is_shared_without_consent(bot: Bot) -> None:
    ref = raise_concern(bot, danger=False, threshold="significant_harm")
    bot.chat(DSL, "2", "1", "", "1,2", "Father may harm mother if told", UNDERSTANDS, "Does not want dad told",
             "Telling parents unsafe", "1", *SHARE, *FOLLOW_UP)
    record = bot.export(ref)
    check(record, base_record(
        ref, consent_model=None, reasons_text="Father may harm mother if told", child_views="Does not want dad told",
        reasons_not_to_ask=[
            code("risk_of_harm", "Asking would place a person (the child, a family member or another person) at "
                                 "increased risk of harm"),
            code("prejudice_crime", "Asking would prejudice the prevention, detection or prosecution of a serious "
                                    "crime")],
        decision={"reasons": "Telling parents unsafe", "approval": signed("Dee DSL")}))
    form = record["referral_form"]["fields"]
    assert form["Have parents / carers been asked or told?"] == "No"
    assert form["Reasons for sharing without consent"] == "Telling parents unsafe"
    assert HUMAN_TIME.pattern.search(form["Approved by (DSL)"].split(", ", 1)[1].removesuffix(" (Terminal)"))
    assert record["referral_form"]["text"].startswith(
        "The parents were not asked or told because: asking would place a person (the child, a family member or "
        "another person) at increased risk of harm; asking would prejudice the prevention, detection or "
        "prosecution of a serious crime. Details: Father may harm mother if told.")
    assert "Child's views: Does not want dad told." in record["referral_form"]["text"]  # G4 when parents not asked


def test_significant_harm_consent_refused_is_shared_with_dsl_approval(bot_on_each_database: Bot) -> None:
    bot = bot_on_each_database
    ref = raise_concern(bot, danger=False, threshold="significant_harm")
    assigned = bot.chat(DSL, "2", "1", "", *NO_REASON, TEACHER, "")
    assert "You are asked to act on concern" in assigned
    bot.chat(TEACHER, "2", *CONSENT, "2", "Angry; refuses", UNDERSTANDS, "Wants Gran told")
    assert "needs your decision (Approve sharing without consent)" in "\n".join(bot.notifications())
    bot.chat(DSL, "2", "Duty to refer overrides refusal", "1", *SHARE, *FOLLOW_UP)
    record = bot.export(ref)
    check(record, base_record(
        ref, assigned={"to": "Tina Teacher", "due_at": ANY, "by": signed("Dee DSL")},
        consent={"asked_who": "Mother (Jane)", "asked_how": PHONE, "asked_at": at("Tue 24 Nov 2026, 12:00"),
                 "asked": signed("Tina Teacher"), "outcome": code("refused", "Consent refused"),
                 "parent_views": "Angry; refuses"}, child_views="Wants Gran told",
        decision={"reasons": "Duty to refer overrides refusal", "approval": signed("Dee DSL")}))
    assert record["referral_form"]["fields"]["Their response"] == "Consent refused"
    assert record["referral_form"]["text"].startswith(
        "Mother (Jane) was asked for consent by phone on Tue 24 Nov 2026, 12:00 by Tina Teacher. "
        "Their response: Consent refused. Parent's views: Angry; refuses.")
    assert "Sharing without consent was approved by Dee DSL (Designated Safeguarding Lead) on " \
        in record["referral_form"]["text"]


def policy_with_model(folder: Path, model: str) -> Path:
    """The England policy with another consent model (inform, or the DSL's choice per case)."""
    policy = folder / f"{model}.yaml"
    source = (Path(__file__).parents[2] / "bot/policy/england.yaml").read_text()
    policy.write_text(source.replace("consent_model: seek\n", f"consent_model: {model}\n", 1))
    return policy


def test_significant_harm_under_the_inform_model(bot: Bot, tmp_path: Path) -> None:
    bot.policy = policy_with_model(tmp_path, "inform")
    ref = raise_concern(bot, danger=False, threshold="significant_harm")
    out = bot.chat(DSL, "2", "1", "", *NO_REASON, TEACHER, "2026-11-24T16:00:00+00:00")
    assert "== Assign who informs the parents ==" in out
    bot.chat(TEACHER, "2", *CONSENT, "1", "", UNDERSTANDS, "Understands; agrees")
    bot.chat(DSL, "2", *SHARE, *FOLLOW_UP)
    check(bot.export(ref), base_record(
        ref, consent_model=code("inform", INFORM_LABEL),
        assigned={"to": "Tina Teacher", "due_at": on("2026-11-24T16:00:00+00:00", "Tue 24 Nov 2026, 16:00"),
                  "by": signed("Dee DSL")},
        consent={"asked_who": "Mother (Jane)", "asked_how": PHONE, "asked_at": at("Tue 24 Nov 2026, 12:00"),
                 "asked": signed("Tina Teacher"), "outcome": code("informed_no_objection", "Informed, no objection"),
                 "parent_views": None}, child_views="Understands; agrees"))


def test_significant_harm_with_the_dsl_choosing_the_model_for_the_case(bot: Bot, tmp_path: Path) -> None:
    bot.policy = policy_with_model(tmp_path, "dsl_choice")
    ref = raise_concern(bot, danger=False, threshold="significant_harm")
    out = bot.chat(DSL, "2", "1", "", *NO_REASON, "2", TEACHER, "")  # 2) Inform the parents
    chose = out.split("== Seek the parents' consent, or inform them? ==")[1].split("==")[0]
    assert "1) Seek the parents' consent" in chose and "2) Inform the parents" in chose
    assert "== Assign who informs the parents ==" in out
    bot.chat(TEACHER, "2", *CONSENT, "1", "", UNDERSTANDS, "Understands; agrees")
    bot.chat(DSL, "2", *SHARE, *FOLLOW_UP)
    record = bot.export(ref)
    assert record["consent_model"]["code"] == "inform"  # the record states the model used for this case
    assert record["model_chosen"]["by"] == "Dee DSL"  # and who chose it: a signed decision
    assert ("Seek the parents' consent, or inform them?", "Dee DSL") in [(s["step"], s["by"])
                                                                         for s in record["signatures"]]


def test_early_help_refused_is_not_shared_and_the_decision_recorded(bot_on_each_database: Bot) -> None:
    bot = bot_on_each_database
    ref = raise_concern(bot, danger=False, threshold="early_help")
    bot.chat(DSL, "2", "2", "Pastoral lead", TEACHER, "")
    bot.chat(TEACHER, "2", *CONSENT, "2", "Prefers to manage at home", UNDERSTANDS, "Child agrees with mum")
    closed = bot.chat(DSL, "2", "Refusal respected; below threshold; weekly check-ins", "2026-12-15")
    assert "is closed: Not shared (agreement refused); monitoring." in closed
    check(bot.export(ref), base_record(
        ref, outcome=code("not_shared", "Not shared (agreement refused); monitoring"),
        threshold={"staff_view": code("early_help", "Below that threshold (early help or support)"),
                   "confirmed": code("early_help", "Early help or s17 support (share with agreement)"),
                   "consulted": "Pastoral lead"},
        assigned={"to": "Tina Teacher", "due_at": ANY, "by": signed("Dee DSL")}, legal_references=[],
        reasons_decided=None, not_shared=signed("Dee DSL"),
        consent={"asked_who": "Mother (Jane)", "asked_how": PHONE, "asked_at": at("Tue 24 Nov 2026, 12:00"),
                 "asked": signed("Tina Teacher"), "outcome": code("refused", "Agreement refused"),
                 "parent_views": "Prefers to manage at home"}, child_views="Child agrees with mum",
        decision={"decision": code("not_share", "Not shared"),
                  "reasons": "Refusal respected; below threshold; weekly check-ins",
                  "necessity": None},
        shared={"with": None, "agency_ref": None, "at": None, "how": None, "what": None, "recorded": None},
        follow_up={"ack_received": None, "referral_outcome": None, "review_date": on("2026-12-15", "Tue 15 Dec 2026"),
                   "recorded": None}))
    signatures = [(s["step"], s["by"]) for s in bot.export(ref)["signatures"]]
    assert signatures == [("Raise a concern", "Tina Teacher"), ("Confirm the threshold", "Dee DSL"),
                          ("Assign who asks the parents for agreement", "Dee DSL"),
                          ("Record the request for agreement and its outcome", "Tina Teacher"),
                          ("Record the decision not to share", "Dee DSL")]  # every decision signed


def test_export_as_csv_holds_the_same_fields(bot: Bot) -> None:
    ref = raise_concern(bot, danger=False, threshold="significant_harm")
    bot.chat(DSL, "2", "1", "", "1", "Unsafe to tell", UNDERSTANDS, "Wants it to stop", "Unsafe", "1", *SHARE,
             *FOLLOW_UP)
    rows = dict(csv.reader(io.StringIO(bot.run("export", ref, "--format", "csv").stdout)))
    assert rows["child"] == CHILD
    assert rows["shared.agency_ref"] == "CSC-4471"
    assert rows["referral_form.fields.Approved by (DSL)"].startswith("Dee DSL, ")
    assert rows["consent.outcome"] == "" and rows["threshold.confirmed"] == SH_CONFIRMED["label"]  # words, not codes
    assert HUMAN_TIME.pattern.match(rows["decision.approval.at"])  # the school's time, as people read it


def test_with_no_dsl_reachable_the_terminal_gives_the_fallback_contacts_not_alerted(sqlite_url: str,
                                                                                   tmp_path: Path) -> None:
    bot = Bot(database_url=sqlite_url, workdir=tmp_path, slack=False, in_process=True)  # DSLs' Slack ids reach nobody
    setup_school(bot)
    done = bot.run("chat", "--as", TEACHER, stdin="1\n1\n", check=False)  # "Yes", then the teacher stops
    out = done.stdout
    assert out.index("Call 999") < out.index("No DSL or deputy can be reached") < out.index("== Who have you")
    assert "alerted as urgent" not in out and "(number not set in the bot: ask the school office)" in out
    assert "is saved at 'Who have you contacted?'" in out and done.returncode == 1
