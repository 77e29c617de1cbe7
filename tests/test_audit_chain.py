"""A history that cannot be rewritten quietly (issue 10, part 4): keyed chains, a chained index of
cases, staff fingerprints, checkpoints kept outside the database, names frozen into events,
operators named in the access log, and the one-time adoption of unkeyed legacy history.

Each tampering test does what someone with write access to the database but without the key
could do, on SQLite and (when configured) PostgreSQL, and checks that `audit verify` fails,
naming the case or record.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from bot import audit, cases, checkpoint, people, views
from bot.audit_adopt import adopt_legacy
from bot.cases import CaseView, Person, Services
from bot.checkpoint import CheckpointError
from bot.crypto import Keyring, generate_key
from bot.policy.model import Actor, FieldType
from storage.audit import GENESIS, Sealer, access_fields, append_access, canonical, chain_hash, event_fields
from storage.db import create_database
from storage.models import AccessLog, Case, CaseEvent
from tests.cli.harness import Bot
from tests.conftest import Clock, england

People = dict[str, Person]
CANARY = "Quillon Marchbanks"
# The early-help path: a DSL decides (the threshold), then assigns someone to ask the parents.
PREFER = {"immediate_danger": "no", "staff_threshold": "early_help", "threshold": "early_help"}


# --- driving a case through the policy, whatever fields its steps have ---------------------------

def _value(view: CaseView, f: Any, svc: Services, people_: People) -> Any:
    if f.type is FieldType.CHOICE:
        allowed = [o.value for o in view.choices.get(f.key, f.options)]
        return PREFER[f.key] if PREFER.get(f.key) in allowed else allowed[0]
    if f.type in (FieldType.TEXT, FieldType.LONGTEXT):
        return f"{CANARY} said so"
    if f.type is FieldType.DATE:
        return "2026-11-20"
    if f.type is FieldType.DATETIME:
        return "2026-11-24T08:40:00+00:00"
    if f.type is FieldType.ASSIGNEE:
        return people_["teacher"].email
    if f.type is FieldType.LEGAL_REFS:
        return [next(c.code for c in svc.policy.legal_references if not c.historical)]
    return [] if f.type is FieldType.REASONS else ""


async def step_on(svc: Services, people_: People, view: CaseView) -> CaseView:
    """Answer the step the case waits on: staff steps by the teacher, the rest by the DSL."""
    assert view.step is not None
    who = people_["teacher"] if view.step.actor is Actor.STAFF else people_["dsl"]
    values = {f.key: _value(view, f, svc, people_) for f in view.step.fields}
    return await cases.answer(svc, actor=who, case_ref=view.ref, version=view.version, step=view.step.id,
                              values=values, platform="test")


async def assigned_case(svc: Services, people_: People) -> CaseView:
    """A case raised, decided by the DSL and assigned to the teacher (the step after is theirs)."""
    view = await cases.raise_concern(svc, actor=people_["teacher"], values={"immediate_danger": "no"}, platform="test")
    for _ in range(20):
        answered = view.step
        view = await step_on(svc, people_, view)
        if answered is not None and any(f.type is FieldType.ASSIGNEE for f in answered.fields):
            return view
    raise AssertionError("the policy never assigned anyone")


# --- tampering, as someone with the database but not the key would -------------------------------

async def execute(svc: Services, *statements: str, **params: Any) -> None:
    """Raw SQL with foreign keys off, as a determined editor of the database would run it."""
    if svc.db.is_sqlite:  # foreign keys are off in a plain sqlite3 connection
        with sqlite3.connect(str(svc.db.engine.url.database)) as conn:
            for sql in statements:
                conn.execute(sql, {k: v for k, v in params.items() if f":{k}" in sql})
        return
    async with svc.db.transaction() as s:
        await s.execute(text("SET LOCAL session_replication_role = replica"))
        for sql in statements:
            await s.execute(text(sql), params)


async def rehash_case(svc: Services, case_id: int, *, seal: Any, key_id: str | None) -> None:
    """Re-hash a case's whole chain with `seal(prev, fields)` and point the case's head at it."""
    async with svc.db.read() as s:
        events = list((await s.execute(text("SELECT id FROM case_events WHERE case_id = :c ORDER BY seq"),
                                       {"c": case_id})).scalars())
    prev = GENESIS
    for event_id in events:
        async with svc.db.transaction() as s:
            e = await s.get(CaseEvent, event_id)
            assert e is not None
            e.prev_hash, e.key_id = prev, key_id
            e.hash = prev = seal(prev, event_fields(e))
    await execute(svc, "UPDATE cases SET head_hash = :h WHERE id = :c", h=prev, c=case_id)


async def rehash_access_log(svc: Services, *, seal: Any, key_id: str | None) -> None:
    async with svc.db.transaction() as s:
        rows = list((await s.execute(text("SELECT id FROM access_log ORDER BY seq"))).scalars())
        prev = GENESIS
        for seq, row_id in enumerate(rows, start=1):
            row = await s.get(AccessLog, row_id)
            assert row is not None
            row.seq, row.prev_hash, row.key_id = seq, prev, key_id  # closing any gap left by a deletion
            row.hash = prev = seal(prev, access_fields(row))


def unkeyed(prev: str, fields: dict[str, Any]) -> str:
    return chain_hash(prev, fields)


def wrong_key(svc: Services) -> Any:
    """The same key id, another key: what someone who guessed at the key would seal with."""
    other = Sealer(Keyring.parse(generate_key(svc.keyring.active)))
    return lambda prev, fields: other.seal(prev, fields, kid=svc.keyring.active)


async def case_row(svc: Services, ref: str) -> Case:
    async with svc.db.read() as s:
        return (await s.execute(text("SELECT * FROM cases WHERE ref = :r"), {"r": ref})).one()  # type: ignore[return-value]


async def problems(svc: Services, cp: checkpoint.Checkpoint | None = None) -> list[str]:
    return [p.line() for p in (await audit.verify(svc, checkpoint=cp)).problems]


async def take(svc: Services) -> checkpoint.Checkpoint:
    """A checkpoint as `audit checkpoint` writes it, read back as `audit verify --checkpoint` does."""
    text_, _ = await checkpoint.take(svc)
    return checkpoint.parse(svc.keyring, text_)


# --- the tests ----------------------------------------------------------------------------------

async def test_an_untouched_history_verifies_with_and_without_a_checkpoint(services: Services, school: People) -> None:
    view = await assigned_case(services, school)
    await views.open_details(services, actor=school["dsl"], case_ref=view.ref)
    await people.remove(services, email="tom@oak.sch.uk")
    cp = await take(services)
    assert cp.cases[view.ref][0] == view.version >= 4
    assert await problems(services, cp) == []
    async with services.db.read() as s:
        keyed = (await s.execute(text("SELECT count(*) FROM case_events WHERE key_id = 't1'"))).scalar_one()
    assert keyed == view.version  # every event records the key that sealed it


@pytest.mark.parametrize("rehash", ["unkeyed", "wrong_key"])
async def test_who_decided_rewritten_and_rehashed_without_the_key_fails_naming_the_case(
        services: Services, school: People, rehash: str) -> None:
    view = await assigned_case(services, school)
    case = await case_row(services, view.ref)
    teacher, dsl = school["teacher"], school["dsl"]
    # The DSL's decisions become the teacher's, frozen names and all; what was seen is replaced.
    await execute(services, "UPDATE case_events SET actor_id = :t, payload = replace(payload, :dsl_name, :t_name) "
                            "WHERE case_id = :c AND actor_id = :d", t=teacher.id, d=dsl.id, c=case.id,
                  dsl_name=dsl.name, t_name=teacher.name)
    await rewrite_what_was_seen(services, case.id, "Nothing was seen")
    seal = unkeyed if rehash == "unkeyed" else wrong_key(services)
    await rehash_case(services, case.id, seal=seal, key_id=None if rehash == "unkeyed" else services.keyring.active)
    record = json.dumps((await views.export_as_operator(services, case_ref=view.ref)).record)
    assert "Nothing was seen" in record and dsl.name not in record  # the edit took: the record now lies
    found = await problems(services)
    assert any(p.startswith(f"case {view.ref} event 1:") for p in found), found
    expected = "not sealed with the audit key" if rehash == "unkeyed" else "does not match its seal"
    assert all(expected in p for p in found if p.startswith(f"case {view.ref} event")), found
    assert not any(CANARY.split()[0] in p or dsl.name in p for p in found)  # refs and ids, never content


async def rewrite_what_was_seen(svc: Services, case_id: int, words: str) -> None:
    """Replace the concern's words (an encrypted value, as the bot would have written it) in its event."""
    async with svc.db.read() as s:
        events = (await s.execute(text("SELECT id, payload FROM case_events WHERE case_id = :c"), {"c": case_id})).all()
    event_id, payload = next((i, json.loads(p)) for i, p in events if "concern" in json.loads(p)["values"])
    payload["values"]["concern"] = svc.keyring.encrypt(words, context=f"case:{case_id}:concern")
    await execute(svc, "UPDATE case_events SET payload = :p WHERE id = :i", p=canonical(payload), i=event_id)


async def test_the_same_chain_rehashed_with_the_key_verifies(services: Services, school: People) -> None:
    """The control for the test above: the re-hashing itself is not what fails."""
    view = await assigned_case(services, school)
    case = await case_row(services, view.ref)
    sealer = Sealer(services.keyring)
    await rehash_case(services, case.id, seal=lambda p, f: sealer.seal(p, f, kid="t1"), key_id="t1")
    assert await problems(services) == []


async def test_a_truncated_case_chain_verifies_alone_but_fails_against_a_checkpoint(
        services: Services, school: People) -> None:
    view = await cases.raise_concern(services, actor=school["teacher"], values={"immediate_danger": "no"},
                                     platform="test")
    before = await case_row(services, view.ref)  # the case as it was one answer ago
    view = await step_on(services, school, view)
    cp = await take(services)
    # The last answer removed, and the case row put back as it was: the chain is shorter but whole.
    await execute(services, "DELETE FROM case_events WHERE case_id = :c AND seq = :v", c=before.id, v=view.version)
    await execute(services, "UPDATE cases SET version = :v, head_hash = :h, step = :st, status = :ss WHERE id = :c",
                  v=before.version, h=before.head_hash, st=before.step, ss=before.status, c=before.id)
    assert await problems(services) == []  # no checkpoint: nothing to compare the length with
    found = await problems(services, cp)
    assert found == [f"case {view.ref} event {view.version}: missing: {before.version} events, fewer than the "
                     f"{view.version} at the checkpoint (truncated or emptied)"]


@pytest.mark.parametrize("cut", ["emptied", "newest"])
async def test_an_emptied_or_cut_access_log_fails_against_a_checkpoint(services: Services, school: People,
                                                                        cut: str) -> None:
    await assigned_case(services, school)
    cp = await take(services)
    await execute(services, {"emptied": "DELETE FROM access_log",
                             "newest": "DELETE FROM access_log WHERE seq = (SELECT max(seq) FROM access_log)"}[cut])
    found = await problems(services, cp)
    assert any(p.startswith(f"access log entry {cp.access[0]}:") and "truncated or emptied" in p for p in found), found


async def test_the_newest_access_entry_deleted_is_the_one_a_checkpoint_records(services: Services,
                                                                                school: People) -> None:
    """`audit checkpoint` logs itself first, so its head is the newest entry when it is taken."""
    await assigned_case(services, school)
    text_ = await checkpoint.take_logged(services, by=people.os_operator())
    async with services.db.read() as s:
        newest = (await s.execute(text("SELECT seq, action FROM access_log ORDER BY seq DESC LIMIT 1"))).one()
    assert tuple(newest) == (json.loads(text_)["access_log"]["seq"], "checkpoint_taken")


async def test_a_deleted_case_fails_with_and_without_a_checkpoint(services: Services, school: People) -> None:
    kept = await assigned_case(services, school)
    gone = await cases.raise_concern(services, actor=school["teacher"], values={"immediate_danger": "no"},
                                     platform="test")
    cp = await take(services)
    case = await case_row(services, gone.ref)
    await execute(services, "DELETE FROM case_events WHERE case_id = :c", "DELETE FROM reminders WHERE case_id = :c",
                  "DELETE FROM outbox WHERE case_id = :c", "DELETE FROM processed_deliveries WHERE case_id = :c",
                  "DELETE FROM cases WHERE id = :c", c=case.id)
    assert await problems(services) == [f"case {gone.ref}: deleted outside consentbot (in the index of cases, "
                                        "not in the database)"]
    assert f"case {gone.ref}: gone: it was at version 1 at the checkpoint of {cp.taken_at} (deleted)" in \
        await problems(services, cp)
    assert not any(kept.ref in p for p in await problems(services, cp))


async def test_a_case_added_outside_consentbot_is_not_in_the_index(services: Services, school: People) -> None:
    view = await assigned_case(services, school)
    await execute(services, "DELETE FROM access_log WHERE action = 'case_opened'")
    await rehash_access_log(services, seal=lambda p, f: Sealer(services.keyring).seal(p, f, kid="t1"), key_id="t1")
    found = await problems(services)
    assert found == [f"case {view.ref}: not in the index of cases (added outside consentbot)"]  # with the key


async def test_a_renamed_staff_member_fails_verify_and_the_export_keeps_the_old_name(
        services: Services, school: People) -> None:
    view = await assigned_case(services, school)
    dsl = school["dsl"]
    await execute(services, "UPDATE staff SET display_name = 'Mallory Mole' WHERE id = :d", d=dsl.id)
    assert await problems(services) == [f"staff record {dsl.id}: changed outside consentbot (differs from its "
                                        "logged fingerprint)"]
    record = json.dumps((await views.export_as_operator(services, case_ref=view.ref)).record)
    assert "Mallory" not in record and dsl.name in record and school["teacher"].name in record


async def test_staff_changes_through_consentbot_keep_verifying(services: Services, school: People) -> None:
    await people.remove(services, email="tom@oak.sch.uk")
    await people.add(services, email="new@oak.sch.uk", role="staff", name="Nia New", school="oak")
    assert await problems(services) == []
    await execute(services, "UPDATE staff SET active = true WHERE email = 'tom@oak.sch.uk'")
    await execute(services, "INSERT INTO staff (school_id, email, display_name, role, active, created_at) "
                            "SELECT school_id, 'mal@oak.sch.uk', 'Mal', 'dsl', true, created_at FROM staff LIMIT 1")
    found = await problems(services)
    assert f"staff record {school['teacher2'].id}: changed outside consentbot (differs from its logged " \
           "fingerprint)" in found
    assert any(p.endswith("not in the access log (added outside consentbot)") for p in found), found


async def test_a_platform_id_linked_at_first_contact_keeps_verifying(services: Services, school: People) -> None:
    from bot import contacts

    await people.add(services, email="new@oak.sch.uk", role="staff", name="Nia New", school="oak")
    linked = await contacts.recognise(services, platform="slack", user_id="U0NEWNIA", emails=["new@oak.sch.uk"])
    assert await problems(services) == []
    await execute(services, "UPDATE staff SET slack_user_id = 'U0MALLORY' WHERE id = :i", i=linked.id)
    assert await problems(services) == [f"staff record {linked.id}: changed outside consentbot (differs from its "
                                        "logged fingerprint)"]


async def test_a_directory_sync_keeps_verifying(services: Services) -> None:
    """Added, linked, re-roled, removed and reactivated by `staff sync-teams`: each change fingerprinted."""
    from bot import directory
    from tests.teams.test_sync_teams import DEE, NEW, PAT, TINA, aad, seed

    await seed(services)
    await directory.sync(services, school="oak", dsls=[DEE, PAT], staff=[TINA, NEW])
    await directory.sync(services, school="oak", dsls=[PAT], staff=[DEE, TINA])
    await directory.sync(services, school="oak", dsls=[PAT], staff=[DEE, TINA, NEW,
                                                                   directory.DirectoryPerson(aad(8), "L", "lee@oak.sch.uk")])
    async with services.db.read() as s:
        actions = set((await s.execute(text("SELECT action FROM access_log WHERE detail LIKE '%fingerprint%'")))
                      .scalars())
    assert actions >= {"staff_added", "staff_linked", "staff_role_changed", "staff_removed", "staff_reactivated"}
    assert await problems(services) == []


async def test_a_rotated_key_ring_still_verifies_older_rows(services: Services, school: People) -> None:
    await assigned_case(services, school)
    rotated = Services(db=services.db, keyring=Keyring.parse(f"{generate_key('t2')},{_key_entry(services)}"),
                       policy=services.policy, clock=services.clock)
    await people.add(rotated, email="new@oak.sch.uk", role="staff", name="Nia New", school="oak")
    async with rotated.db.read() as s:
        kids = set((await s.execute(text("SELECT DISTINCT key_id FROM access_log"))).scalars())
    assert kids == {"t1", "t2"}
    assert await problems(rotated) == []
    assert await problems(services) != []  # the old ring alone cannot check what the new key sealed


def _key_entry(svc: Services) -> str:
    import base64

    return f"t1:{base64.urlsafe_b64encode(svc.keyring.keys['t1']).decode()}"


async def test_an_operator_export_is_logged_with_the_staff_id_or_the_os_user(services: Services,
                                                                            school: People) -> None:
    view = await assigned_case(services, school)
    dsl = await people.operator(services, email=school["dsl"].email)
    nobody = await people.operator(services, email="nobody@oak.sch.uk")
    await views.export_as_operator(services, case_ref=view.ref, operator=dsl)
    await views.export_as_operator(services, case_ref=view.ref, operator=nobody)
    await views.export_as_operator(services, case_ref=view.ref)
    async with services.db.read() as s:
        logged = (await s.execute(text("SELECT actor_id, detail FROM access_log WHERE action = 'exported' "
                                       "ORDER BY seq"))).all()
    os_user = f"os:{getpass.getuser()}"
    assert [(a, json.loads(d)["operator"]) for a, d in logged] == [
        (school["dsl"].id, f"staff:{school['dsl'].id}"), (None, os_user), (None, os_user)]
    assert json.loads(logged[1][1])["as_unmatched"] is True


# --- legacy history: adopted once by `db upgrade` ---------------------------------------------

async def make_legacy(svc: Services) -> None:
    """Turn the database into one written before keyed chains: every row plain SHA-256, no key id."""
    async with svc.db.read() as s:
        case_ids = list((await s.execute(text("SELECT id FROM cases"))).scalars())
    for case_id in case_ids:
        await rehash_case(svc, case_id, seal=unkeyed, key_id=None)
    await rehash_access_log(svc, seal=unkeyed, key_id=None)


async def test_legacy_history_is_adopted_once_then_unkeyed_rewrites_fail(services: Services, school: People) -> None:
    view = await assigned_case(services, school)
    await make_legacy(services)
    assert any("never adopted" in p for p in await problems(services))
    adopted = await adopt_legacy(services, by=people.os_operator())
    assert adopted is not None and adopted.cases == 1 and adopted.staff == len(school)
    assert await problems(services) == []
    assert await adopt_legacy(services, by=people.os_operator()) is None  # once only
    # After adoption, a legacy event edited and the chain re-hashed with the unkeyed function fails.
    case = await case_row(services, view.ref)
    await execute(services, "UPDATE case_events SET actor_id = :t WHERE case_id = :c AND seq = 2",
                  t=school["dsl"].id, c=case.id)
    await rehash_case(services, case.id, seal=unkeyed, key_id=None)
    found = await problems(services)
    assert any(p.startswith(f"case {view.ref} event {view.version}:") and "adopted" in p for p in found), found


async def test_an_unkeyed_row_appended_after_adoption_fails(services: Services, school: People) -> None:
    await assigned_case(services, school)
    await make_legacy(services)
    await adopt_legacy(services, by=people.os_operator())
    async with services.db.transaction() as s:
        last = (await s.execute(text("SELECT seq, hash FROM access_log ORDER BY seq DESC LIMIT 1"))).one()
        row = AccessLog(seq=last.seq + 1, at=services.clock(), action="viewed", detail="{}", prev_hash=last.hash,
                        hash="")
        row.hash = chain_hash(row.prev_hash, access_fields(row))
        s.add(row)
    assert await problems(services) == [f"access log entry {last.seq + 1}: not sealed with the audit key (an "
                                        "unkeyed hash: rewritten without the key, or never adopted)"]


# --- the real commands --------------------------------------------------------------------------

@pytest.fixture
async def bot_with_case(migrated_sqlite_url: str, tmp_path: Path, clock: Clock) -> AsyncIterator[tuple[Bot, str]]:
    """A deployment (SQLite) with one assigned case, made through the use cases with the bot's key."""
    bot = Bot(database_url=migrated_sqlite_url, workdir=tmp_path, in_process=True)
    svc = Services(db=create_database(bot.database_url), keyring=Keyring.parse(bot.key), policy=england(),
                   clock=clock)
    try:
        school = {role: await people.add(svc, email=f"{role}@oak.sch.uk", role=role if role != "teacher" else "staff",
                                         name=f"{role.title()} Person", school="oak")
                  for role in ("teacher", "dsl", "deputy")}
        yield bot, (await assigned_case(svc, school)).ref
    finally:
        await svc.db.dispose()


def test_checkpoint_and_verify_commands(bot_with_case: tuple[Bot, str], tmp_path: Path) -> None:
    bot, ref = bot_with_case
    file = tmp_path / "heads.json"
    bot.run("audit", "checkpoint", "--out", str(file), "--as", "dsl@oak.sch.uk")
    assert file.stat().st_mode & 0o777 == 0o600 and ref in file.read_text() and "Quillon" not in file.read_text()
    ok = bot.run("audit", "verify", "--checkpoint", str(file))
    assert ok.stdout.endswith(f"against the checkpoint {file}: ok\n")
    _delete_newest_event(bot)
    failed = bot.run("audit", "verify", "--checkpoint", str(file), check=False)
    assert failed.returncode == 1 and f"FAIL case {ref} event" in failed.stdout and "FAILED" in failed.stdout
    assert "Quillon" not in failed.stdout + failed.stderr


def _delete_newest_event(bot: Bot) -> None:
    with sqlite3.connect(bot.database_url.removeprefix("sqlite+aiosqlite:///")) as conn:
        conn.execute("DELETE FROM case_events WHERE id = (SELECT max(id) FROM case_events)")


def test_an_altered_checkpoint_file_is_refused(bot_with_case: tuple[Bot, str], tmp_path: Path) -> None:
    bot, ref = bot_with_case
    file = tmp_path / "heads.json"
    bot.run("audit", "checkpoint", "--out", str(file))
    body = json.loads(file.read_text())
    body["cases"][ref]["version"] = 1  # a shorter chain would pass an edited checkpoint
    file.write_text(json.dumps(body))
    done = bot.run("audit", "verify", "--checkpoint", str(file), check=False)
    assert done.returncode == 1 and "its signature does not match" in done.stderr
    with pytest.raises(CheckpointError):
        checkpoint.parse(Keyring.parse(generate_key("k1")), json.dumps({**body, "signature": "0"}))


def test_operator_commands_log_the_staff_id_with_as_else_the_os_user(bot_with_case: tuple[Bot, str]) -> None:
    bot, ref = bot_with_case
    bot.run("staff", "add", "new@oak.sch.uk", "--role", "staff", "--name", "Nia New", "--school", "oak",
            "--as", "dsl@oak.sch.uk")
    bot.run("staff", "remove", "new@oak.sch.uk")
    bot.run("export", ref, "--as", "deputy@oak.sch.uk")
    lines = bot.run("audit", "show").stdout.splitlines()[::-1]  # newest first
    added, removed, exported = (next(line for line in lines if f"\t{action}\t" in line)
                                for action in ("staff_added", "staff_removed", "exported"))
    assert "staff=2\t" in added and '"operator":"staff:2"' in added
    assert "staff=-\t" in removed and f'"operator":"os:{getpass.getuser()}"' in removed
    assert "staff=3\t" in exported and '"operator":"staff:3"' in exported
    assert bot.run("audit", "verify").stdout.endswith(": ok\n")


def test_db_upgrade_adopts_legacy_history_once(bot_with_case: tuple[Bot, str], clock: Clock) -> None:
    import asyncio

    bot, ref = bot_with_case

    async def legacy() -> None:
        svc = Services(db=create_database(bot.database_url), keyring=Keyring.parse(bot.key), policy=england())
        try:
            await make_legacy(svc)
        finally:
            await svc.db.dispose()

    asyncio.run(legacy())
    assert bot.run("audit", "verify", check=False).returncode == 1
    first = bot.run("db", "upgrade").stdout
    assert "adopted the audit history written before keyed chains: 1 case chains, 3 staff records" in first
    assert "adopted" not in bot.run("db", "upgrade").stdout
    assert bot.run("audit", "verify").stdout.endswith(": ok\n")


async def test_appends_to_the_access_log_at_the_same_moment_all_land_in_one_unbroken_chain(
        services: Services) -> None:
    # Each writer holds its transaction open a little after appending, so on PostgreSQL the others
    # are waiting on the lock when it commits: a read that did not see its entry would chain from
    # the same predecessor, and the second of the two would be refused (seq is unique).
    async def append(n: int) -> None:
        async with services.db.transaction() as s:
            await append_access(s, action="viewed", at=services.clock(), detail={"n": n})
            if s.get_bind().dialect.name == "postgresql":
                await s.execute(select(func.pg_sleep(0.005)))

    await asyncio.gather(*(append(n) for n in range(24)))

    report = await audit.verify(services)
    async with services.db.read() as s:
        seqs = sorted((await s.execute(text("SELECT seq FROM access_log"))).scalars())
    assert seqs == list(range(1, 25)), seqs
    assert report.access_entries == 24 and report.problems == []
