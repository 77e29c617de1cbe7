"""A Hypothesis fuzz of POST /slack/events (issue 8, "a reliability suite"): signed and unsigned
bodies of every shape (random bytes, forms, JSON payloads nested up to 5,000 deep, the recorded
Slack requests mutated, odd headers and timestamps, our own concern modal submitted with random
answers) never get a 5xx, never log a traceback, and an unsigned one never changes the database.

One app and one database serve the whole module (each example is one request, a few ms); the
fake Slack on loopback is the Web API's base URL, so no call leaves the machine. Examples are
derandomized, so CI runs the same ones every time. `pytest -s` prints the figures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import people
from bot.app import build_app
from bot.cases import Services
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import form_body, sign
from tests.slack.conftest import SECRET, USERS, element_state, make_services, slack_settings

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "slack"
RECORDED = [p.read_text() for p in sorted(FIXTURES.glob("*.body"))]
FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
EXAMPLES = {"test_random_bytes": 300, "test_random_forms": 300, "test_random_json_payloads": 400,
            "test_recorded_requests_mutated": 500, "test_random_headers": 300,
            "test_our_modal_submitted_with_random_answers": 300}
CONTENT_TYPES = ["application/x-www-form-urlencoded", "application/json", "text/plain", "multipart/form-data",
                 "application/json; charset=utf-8", ""]
SLACK_TYPES = ["block_actions", "view_submission", "view_closed", "shortcut", "message_action", "block_suggestion",
               "event_callback", "url_verification", "ssl_check", "interactive_message", "app_home_opened"]
KEYS = ["type", "user", "id", "view", "state", "values", "actions", "action_id", "block_id", "value", "callback_id",
        "private_metadata", "trigger_id", "event", "event_id", "team", "channel", "message", "text", "blocks",
        "selected_option", "selected_options", "hash", "challenge", "command", "user_id", "response_url"]
IDS = [*USERS.values(), "open_case", "concern_global", "concern_message", "step:concern", "case:1", "C0STAFFROOM"]


@dataclass(repr=False)  # a falsifying example's report stays short
class Fuzzer:
    """The app under fuzz, driven from sync Hypothesis tests through one event loop."""

    runner: asyncio.Runner
    http: httpx.AsyncClient
    svc: Services
    reader: sqlite3.Connection
    slack: FakeSlack
    statuses: Counter[int] = field(default_factory=Counter)
    examples: int = 0
    failing: bool = False

    def post(self, body: bytes, headers: dict[str, bytes]) -> int:
        response = self.runner.run(self.http.post("/slack/events", content=body, headers=headers))
        self.examples += 1
        self.statuses[response.status_code] += 1
        return response.status_code

    def rows(self) -> tuple[int, ...]:
        """Rows of cases, case events and the access log: read beside the app, on a connection of
        its own to the same file (ten times faster than a round trip through the app's engine).
        """
        return tuple(self.reader.execute(COUNT_ROWS).fetchone())


COUNT_ROWS = "SELECT (SELECT count(*) FROM cases), (SELECT count(*) FROM case_events), (SELECT count(*) FROM access_log)"


@pytest.fixture(scope="module")
def fuzzer(slack_server: FakeSlack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzer]:
    slack_server.reset()
    runner = asyncio.Runner()
    path = tmp_path_factory.mktemp("fuzz") / "t.db"
    svc = runner.run(make_services(f"sqlite+aiosqlite:///{path}"))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(slack_settings(slack_server), svc)),
                             base_url="http://consentbot.test")
    fuzzer = Fuzzer(runner, http, svc, sqlite3.connect(path), slack_server)
    empty = fuzzer.rows()
    for name, role in (("teacher", "staff"), ("dsl", "dsl"), ("deputy", "deputy")):
        runner.run(people.add(svc, email=f"{name}@oak.sch.uk", role=role, name=name.title(), school="oak",
                              slack_user_id=USERS[name]))
    assert fuzzer.rows() != empty, "the row count must see what the app writes (adding people is audited)"
    yield fuzzer
    fuzzer.reader.close()
    runner.run(http.aclose())
    runner.run(svc.db.dispose())
    runner.close()


def test_the_fuzz_is_at_least_2000_examples() -> None:
    assert sum(EXAMPLES.values()) >= 2_000


@pytest.fixture
def fuzz(fuzzer: Fuzzer, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest) -> Iterator[Fuzzer]:
    """The fuzzer, with every log line captured: none may carry a traceback; and every example ran."""
    caplog.set_level(logging.INFO)
    before = fuzzer.examples, Counter(fuzzer.statuses)
    started = time.monotonic()
    yield fuzzer
    ran, seen = fuzzer.examples - before[0], fuzzer.statuses - before[1]
    print(f"\nfuzz: {ran} examples in {time.monotonic() - started:.1f} s, statuses {dict(sorted(seen.items()))}; "
          f"module total {fuzzer.examples}; rows (cases, case events, access log) {fuzzer.rows()}; "
          f"calls to the fake Slack {len(fuzzer.slack.calls)}")
    assert fuzzer.failing or ran >= EXAMPLES[request.node.originalname]  # a failure stops the run early
    assert not [r for r in caplog.records if r.exc_info], "a log record carries a traceback"
    assert "Traceback" not in caplog.text


# -- shapes -----------------------------------------------------------------------------------

json_leaves = (st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from(IDS + SLACK_TYPES)
               | st.text(max_size=40))
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5),
                           max_leaves=8)
payloads = st.builds(lambda kind, rest: {**rest, "type": kind}, st.sampled_from(SLACK_TYPES) | json_leaves,
                     st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6))
# Deep enough to pass json.loads' recursion limit (about 1,000), and MAX_PAYLOAD_DEPTH's edges.
DEPTHS = st.sampled_from([63, 64, 65, 1_500, 5_000])
nested = st.builds(lambda depth, open_: open_ * depth, DEPTHS, st.sampled_from(["[", "{\"a\":"]))
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                      max_size=60).map(lambda text: text.encode("latin-1"))


def headers_for(body: bytes, content_type: str, signed: bool) -> dict[str, bytes]:
    headers = {"Content-Type": content_type.encode()}
    if signed:
        headers.update({k: v.encode() for k, v in sign(SECRET, body).items()})
    return headers


@st.composite
def mutated_recording(draw: st.DrawFn) -> str:
    """A recorded Slack request with one part of it changed: a value, a byte, or its length."""
    text = draw(st.sampled_from(RECORDED))
    how = draw(st.sampled_from(["value", "value", "truncate", "splice"]))
    if how == "truncate":
        return text[:draw(st.integers(0, len(text)))]
    if how == "splice":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.text(max_size=20)) + text[at + draw(st.integers(0, 20)):]
    return replace_a_value(text, draw)


def replace_a_value(text: str, draw: st.DrawFn) -> str:
    """Replace one value anywhere in the request's JSON (or one form field) by a random one."""
    form = not text.startswith("{")
    fields = dict(parse_qsl(text, keep_blank_values=True)) if form else {}
    if form and "payload" not in fields:
        fields[draw(st.sampled_from(sorted(fields) or ["text"]))] = draw(st.text(max_size=40))
        return urlencode(fields)
    document = json.loads(fields["payload"] if form else text)
    paths = list(walk(document))
    parent, key = draw(st.sampled_from(paths)) if paths else (document, "type")
    parent[key] = draw(json_values)
    encoded = json.dumps(document)
    return "payload=" + quote(encoded, safe="") if form else encoded


def walk(node: Any) -> Iterator[tuple[Any, Any]]:
    """(container, key) of every value inside `node`."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        yield node, key
        yield from walk(child)


# -- the properties ---------------------------------------------------------------------------


def check(fuzz: Fuzzer, body: bytes, headers: dict[str, bytes], signed: bool) -> None:
    """One request: never a 5xx; unsigned, nothing written."""
    fuzz.failing = True  # until this example has passed
    before = None if signed else fuzz.rows()
    status = fuzz.post(body, headers)
    assert status < 500, (status, body[:200], headers)
    if not signed:
        assert fuzz.rows() == before, "an unsigned request changed the database"
    fuzz.failing = False


@settings(FUZZ, max_examples=EXAMPLES["test_random_bytes"])
@given(body=st.binary(max_size=2_000), content_type=st.sampled_from(CONTENT_TYPES), signed=st.booleans())
def test_random_bytes(fuzz: Fuzzer, body: bytes, content_type: str, signed: bool) -> None:
    check(fuzz, body, headers_for(body, content_type, signed), signed)


@settings(FUZZ, max_examples=EXAMPLES["test_random_forms"])
@given(fields=st.lists(st.tuples(st.sampled_from([*KEYS, "payload", "payload"]) | st.text(max_size=10),
                                 st.text(max_size=60) | json_values.map(json.dumps) | nested), max_size=6),
       signed=st.booleans())
def test_random_forms(fuzz: Fuzzer, fields: list[tuple[str, str]], signed: bool) -> None:
    body = urlencode(fields).encode()
    check(fuzz, body, headers_for(body, "application/x-www-form-urlencoded", signed), signed)


@settings(FUZZ, max_examples=EXAMPLES["test_random_json_payloads"])
@given(payload=payloads, as_form=st.booleans(), depth=st.just(0) | DEPTHS,
       signed=st.booleans())
def test_random_json_payloads(fuzz: Fuzzer, payload: dict[str, Any], as_form: bool, depth: int,
                              signed: bool) -> None:
    document = with_depth(json.dumps(payload), depth)
    body = ("payload=" + quote(document, safe="") if as_form else document).encode()
    content_type = "application/x-www-form-urlencoded" if as_form else "application/json"
    check(fuzz, body, headers_for(body, content_type, signed), signed)


def with_depth(document: str, depth: int) -> str:
    """`document` (a JSON object) with one more member, nested `depth` levels deep."""
    if not depth:
        return document
    rest = document[1:] if document == "{}" else "," + document[1:]
    return '{"deep":' + "[" * depth + "]" * depth + rest


@settings(FUZZ, max_examples=EXAMPLES["test_recorded_requests_mutated"])
@given(text=mutated_recording(), signed=st.booleans())
def test_recorded_requests_mutated(fuzz: Fuzzer, text: str, signed: bool) -> None:
    body = text.encode()
    content_type = "application/json" if text.startswith("{") else "application/x-www-form-urlencoded"
    check(fuzz, body, headers_for(body, content_type, signed), signed)


@settings(FUZZ, max_examples=EXAMPLES["test_random_headers"])
@given(text=st.sampled_from(RECORDED), signed=st.booleans(),
       timestamp=st.none() | header_text | st.integers().map(lambda n: str(n).encode())
       | st.integers(1, 5_000).map(lambda n: b"9" * n),
       signature=st.none() | header_text, extra=st.dictionaries(
           st.sampled_from(["X-Slack-Retry-Num", "X-Slack-Retry-Reason", "Content-Type", "Content-Encoding",
                            "Transfer-Encoding", "X-Forwarded-For", "Accept"]), header_text, max_size=3))
def test_random_headers(fuzz: Fuzzer, text: str, signed: bool, timestamp: bytes | None, signature: bytes | None,
                        extra: dict[str, bytes]) -> None:
    body = text.encode()
    headers = {**headers_for(body, "application/x-www-form-urlencoded", signed), **extra}
    signed_as = dict(headers)
    if timestamp is not None:
        headers["X-Slack-Request-Timestamp"] = timestamp
    if signature is not None:
        headers["X-Slack-Signature"] = signature
    still_signed = signed and all(headers[k] == signed_as[k] for k in ("X-Slack-Request-Timestamp", "X-Slack-Signature"))
    check(fuzz, body, headers, still_signed)


@pytest.fixture(scope="module")
def concern_modal(fuzzer: Fuzzer) -> dict[str, Any]:
    """The first step's modal as the bot opens it for a registered teacher (the template to fill in)."""
    body = form_body({"type": "shortcut", "callback_id": "concern_global", "trigger_id": "1.fuzz",
                      "user": {"id": USERS["teacher"]}, "team": {"id": "T0FAKE0001"}}).encode()
    assert fuzzer.post(body, headers_for(body, "application/x-www-form-urlencoded", True)) == 200
    return dict(fuzzer.slack.calls_to("views.open")[-1].params["view"])


element_states = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["plain_text_input", "radio_buttons", "checkboxes", "static_select", "datepicker",
                             "datetimepicker", "multi_static_select"]) | json_leaves,
    "value": json_values, "selected_option": json_values | st.fixed_dictionaries({"value": json_leaves}),
    "selected_options": json_values | st.lists(st.fixed_dictionaries({"value": json_leaves}), max_size=4),
    "selected_date": json_values, "selected_date_time": st.integers() | json_values})


def real_answer(element: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """What Slack would send for `element`: one of its options, or a value of its type."""
    options = [o["value"] for o in element.get("options", [])]
    values = {"radio_buttons": st.sampled_from(options or [""]), "static_select": st.sampled_from(options or [""]),
              "checkboxes": st.lists(st.sampled_from(options or [""]), unique=True),
              "multi_static_select": st.lists(st.sampled_from(options or [""]), unique=True),
              "datepicker": st.dates().map(str), "datetimepicker": st.integers(0, 2**33)}
    return values.get(element["type"], st.text(max_size=600)).map(lambda value: element_state(element, value))


@st.composite
def filled_in(draw: st.DrawFn, view: dict[str, Any]) -> dict[str, Any]:
    """A view_submission of `view` by a random (mostly registered) person, with random answers."""
    inputs = {b["block_id"]: b["element"] for b in view.get("blocks", []) if b.get("type") == "input"}
    answered = draw(st.lists(st.sampled_from(sorted(inputs)) | st.text(max_size=8), max_size=len(inputs) + 2))
    values = {key: {key: draw(real_answer(inputs[key]) | element_states if key in inputs else element_states)}
              for key in answered}
    shown = {**view, "id": draw(st.sampled_from(["V0FUZZ", "V0FUZZ2"]) | st.text(max_size=8)),
             "hash": draw(st.text(max_size=8)), "state": {"values": values},
             "private_metadata": draw(st.just(view.get("private_metadata")) | json_leaves)}
    who = draw(st.sampled_from(list(USERS.values())) | st.text(max_size=12))
    return {"type": "view_submission", "user": {"id": who}, "team": {"id": "T0FAKE0001"}, "view": shown}


@settings(FUZZ, max_examples=EXAMPLES["test_our_modal_submitted_with_random_answers"])
@given(data=st.data(), signed=st.booleans())
def test_our_modal_submitted_with_random_answers(fuzz: Fuzzer, concern_modal: dict[str, Any], data: st.DataObject,
                                                 signed: bool) -> None:
    body = form_body(data.draw(filled_in(concern_modal))).encode()
    check(fuzz, body, headers_for(body, "application/x-www-form-urlencoded", signed), signed)
