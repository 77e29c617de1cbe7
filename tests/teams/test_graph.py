"""Graph through the real msgraph-sdk over HTTP to FakeGraph: paging, installs, notifications, and
how every failure is translated, with no request ever repeated except after a 429.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator

import pytest

from bot.directory import DirectoryPerson
from bot.ports import Permanent, RateLimited, Transient
from handlers.teams.graph import (
    DECISION_ACTIVITY,
    URGENT_ACTIVITY,
    Directory,
    build_graph_client,
    waiting_out_rate_limits,
)
from tests.fakes.graph_api import FakeGraph, graph_group, graph_user

GROUP = "0d5c0000-0000-4000-8000-00000000d51a"
APP = "11111111-2222-3333-4444-555555555555"
ALICE = "aaaaaaaa-0000-4000-8000-000000000001"
NOTIFY = r"/sendActivityNotification$"
TOKEN = "t0ken"
WEB_URL = "https://teams.microsoft.com/l/entity/app/cases?context=C-7K3M9Q"


@pytest.fixture
def graph(fake_graph: FakeGraph) -> FakeGraph:
    """The session's FakeGraph (tests/teams/conftest.py), reset."""
    return fake_graph


def directory_at(url: str, *, token: str = TOKEN, timeout: float = 5) -> Directory:
    async def get_token() -> str:
        return token

    return Directory(build_graph_client(url, get_token, timeout=timeout))


@pytest.fixture
async def directory(graph: FakeGraph) -> AsyncIterator[Directory]:
    d = directory_at(graph.url + "/")  # a trailing slash is dropped
    yield d
    await d.aclose()


async def notify(directory: Directory, user: str = ALICE) -> None:
    await directory.notify(user, case_ref="C-7K3M9Q", activity_type=URGENT_ACTIVITY, web_url=WEB_URL)


async def test_members_are_read_over_every_page_users_only(graph: FakeGraph, directory: Directory) -> None:
    graph.set_group(GROUP, [
        graph_user(ALICE, "Alice Adams", mail="Alice.Adams@Oak.sch.uk"),
        graph_group("99999999-0000-4000-8000-000000000001", "Nested DSLs"),
        graph_user("bbbbbbbb-0000-4000-8000-000000000002", "Ben Brown", upn="Ben.Brown@oak.onmicrosoft.com"),
        graph_user("cccccccc-0000-4000-8000-000000000003", "Cat Cole", mail="cat@oak.sch.uk", enabled=False),
        graph_group("99999999-0000-4000-8000-000000000002", "Other"),
        graph_user("dddddddd-0000-4000-8000-000000000004", "Dan Dee", mail="dan@oak.sch.uk"),
    ])

    people = await directory.transitive_members(GROUP)

    assert people == [
        DirectoryPerson(id=ALICE, name="Alice Adams", email="alice.adams@oak.sch.uk", upn="Alice.Adams@Oak.sch.uk"),
        DirectoryPerson(id="bbbbbbbb-0000-4000-8000-000000000002", name="Ben Brown",
                        email="ben.brown@oak.onmicrosoft.com", upn="Ben.Brown@oak.onmicrosoft.com"),
        DirectoryPerson(id="dddddddd-0000-4000-8000-000000000004", name="Dan Dee", email="dan@oak.sch.uk",
                        upn="dan@oak.sch.uk"),
    ]  # the groups and the disabled account are skipped
    calls = graph.calls_to("/transitiveMembers$")
    assert len(calls) == 3  # six items, two to a page
    assert calls[0].query["$select"] == "id,displayName,mail,userPrincipalName,accountEnabled"
    assert [c.query.get("$skiptoken") for c in calls] == [None, "2", "4"]
    assert all(c.headers["authorization"] == "Bearer t0ken" for c in calls)


async def test_an_unknown_group_is_a_permanent_error_naming_the_code(directory: Directory) -> None:
    with pytest.raises(Permanent) as refused:
        await directory.transitive_members("00000000-0000-4000-8000-000000000000")
    assert refused.value.code == "graph:404:Request_ResourceNotFound"


async def test_install_then_install_again_both_succeed(graph: FakeGraph, directory: Directory) -> None:
    await directory.install_app(ALICE, APP)
    await directory.install_app(ALICE, APP)  # 409 Conflict: already installed

    calls = graph.calls_to("/installedApps$", "POST")
    assert len(calls) == 2
    assert calls[0].json["teamsApp@odata.bind"] == f"{graph.url}/appCatalogs/teamsApps/{APP}"
    assert graph.installed_for(ALICE) == {APP}


async def test_a_notification_carries_the_reference_only(graph: FakeGraph, directory: Directory) -> None:
    await notify(directory)

    [call] = graph.calls_to(NOTIFY)
    assert call.path == f"/v1.0/users/{ALICE}/teamwork/sendActivityNotification"
    assert call.json == {
        "topic": {"source": "text", "value": "Concern C-7K3M9Q", "webUrl": WEB_URL},
        "activityType": "urgentConcern",
        "previewText": {"content": "Concern C-7K3M9Q needs you"},
        "templateParameters": [{"name": "caseRef", "value": "C-7K3M9Q"}],
    }
    assert graph.notifications_to(ALICE) == [call.json]
    assert (URGENT_ACTIVITY, DECISION_ACTIVITY) == ("urgentConcern", "decisionNeeded")


async def test_a_429_is_waited_out_and_the_call_made_again(graph: FakeGraph, directory: Directory) -> None:
    graph.fail_next(NOTIFY, 429, retry_after=1)

    await waiting_out_rate_limits(lambda: notify(directory))

    calls = graph.calls_to(NOTIFY)
    assert len(calls) == 2
    assert len(graph.notifications_to(ALICE)) == 1


async def test_the_wait_is_the_retry_after(graph: FakeGraph, directory: Directory) -> None:
    graph.fail_next(NOTIFY, 429, retry_after=1)
    started = time.monotonic()
    with pytest.raises(RateLimited) as limited:
        await notify(directory)
    assert limited.value.retry_after == 1 and limited.value.code == "graph:429"

    graph.fail_next(NOTIFY, 429, retry_after=1)
    await waiting_out_rate_limits(lambda: notify(directory))
    assert time.monotonic() - started >= 0.95
    first, second = (graph.calls_to(NOTIFY)[i] for i in (1, 2))
    assert first.json == second.json


async def test_rate_limits_past_the_attempts_are_raised(graph: FakeGraph, directory: Directory) -> None:
    graph.fail_next(NOTIFY, 429, retry_after=0, times=3)
    with pytest.raises(RateLimited):
        await waiting_out_rate_limits(lambda: notify(directory), attempts=3)
    assert len(graph.calls_to(NOTIFY)) == 3 and graph.notifications_to(ALICE) == []

    graph.fail_next(NOTIFY, 429, retry_after=30)
    with pytest.raises(RateLimited):  # longer than we may wait: raised without waiting
        await waiting_out_rate_limits(lambda: notify(directory), max_wait=5)


async def test_a_503_after_graph_notified_is_ambiguous_and_never_repeated(graph: FakeGraph,
                                                                          directory: Directory) -> None:
    graph.fail_next(NOTIFY, 503, act=True)

    with pytest.raises(Transient) as failed:
        await waiting_out_rate_limits(lambda: notify(directory))

    assert failed.value.ambiguous and failed.value.code == "graph:503"
    assert len(graph.calls_to(NOTIFY)) == 1  # neither we nor the SDK's retry handler sent it again
    assert len(graph.notifications_to(ALICE)) == 1


async def test_a_503_with_retry_after_on_a_read_is_not_repeated_either(graph: FakeGraph,
                                                                       directory: Directory) -> None:
    graph.set_group(GROUP, [graph_user(ALICE, "Alice Adams", mail="alice@oak.sch.uk")])
    graph.fail_next("/transitiveMembers$", 503, retry_after=0)
    with pytest.raises(Transient):
        await directory.transitive_members(GROUP)
    assert len(graph.calls_to("/transitiveMembers$")) == 1


async def test_no_answer_in_time_is_ambiguous(graph: FakeGraph) -> None:
    directory = directory_at(graph.url, timeout=0.3)
    graph.stall_next(NOTIFY, 2)
    try:
        with pytest.raises(Transient) as failed:
            await notify(directory)
    finally:
        await directory.aclose()
    assert failed.value.ambiguous and failed.value.code == "graph:timeout"
    assert len(graph.calls_to(NOTIFY)) == 1


async def test_nobody_listening_is_not_ambiguous() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    directory = directory_at(f"http://127.0.0.1:{port}/v1.0")
    try:
        with pytest.raises(Transient) as failed:
            await notify(directory)
    finally:
        await directory.aclose()
    assert not failed.value.ambiguous and failed.value.code == "graph:ConnectError"


async def test_a_request_without_a_token_is_refused(graph: FakeGraph) -> None:
    directory = directory_at(graph.url, token="")
    try:
        with pytest.raises(Permanent) as refused:
            await notify(directory)
    finally:
        await directory.aclose()
    assert refused.value.code == "graph:401:InvalidAuthenticationToken"
    [call] = graph.calls_to(NOTIFY)
    assert "authorization" not in call.headers
    assert graph.notifications_to(ALICE) == []


async def test_a_token_graph_does_not_accept_is_refused(graph: FakeGraph, directory: Directory) -> None:
    graph.accepted_tokens = {"the-right-one"}
    with pytest.raises(Permanent) as refused:
        await directory.install_app(ALICE, APP)
    assert refused.value.code == "graph:401:InvalidAuthenticationToken"
    assert graph.installed_for(ALICE) == set()


async def test_the_token_goes_to_graph_only(graph: FakeGraph) -> None:
    """A nextLink to another host is followed without the token (the fake then refuses it)."""
    graph.set_group(GROUP, [graph_user(ALICE, "Alice", mail="a@oak.sch.uk"), graph_user("b" * 8, "B", mail="b@x"),
                            graph_user("c" * 8, "C", mail="c@x")])
    other_host = graph.url.replace("127.0.0.1", "localhost")
    directory = directory_at(other_host)  # so Graph's nextLinks (127.0.0.1) are another host
    try:
        with pytest.raises(Permanent) as refused:
            await directory.transitive_members(GROUP)
    finally:
        await directory.aclose()
    assert refused.value.code == "graph:401:InvalidAuthenticationToken"
    first, second = graph.calls_to("/transitiveMembers$")
    assert first.headers["authorization"] == "Bearer t0ken" and "authorization" not in second.headers
