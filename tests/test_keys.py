"""Keys that cannot be confused (issue 8, defect 7): the database keeps a check value per key id,
and a key ring that cannot open them is refused at start-up, by every command and by /readyz."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from bot import keys
from bot.app import build_app
from bot.cases import Services
from bot.config import Settings
from bot.crypto import Keyring, generate_key
from bot.keys import KeyMismatch
from storage.db import create_database
from storage.keys import key_checks
from tests.cli.harness import Bot, setup_school
from tests.conftest import england

WRONG_T1 = "the key with id 't1' in CONSENTBOT_ENCRYPTION_KEY is not the one this database was written with"


def with_ring(svc: Services, ring: Keyring) -> Services:
    return replace(svc, keyring=ring)


def material(ring: Keyring) -> list[str]:
    """How a key could appear in a message: base64 as configured, and raw hex."""
    return [text for raw in ring.keys.values() for text in (base64.urlsafe_b64encode(raw).decode()[:16], raw.hex()[:16])]


async def stored(svc: Services) -> dict[str, str]:
    async with svc.db.read() as s:
        return await key_checks(s)


async def test_the_first_start_records_the_active_key_and_the_same_key_passes(services: Services) -> None:
    await keys.check(services)
    recorded = await stored(services)
    assert list(recorded) == ["t1"] and keys.CHECK_TEXT not in recorded["t1"]
    await keys.check(services)  # the next start
    assert await stored(services) == recorded and await keys.mismatch(services) is None


async def test_another_key_under_the_same_id_is_refused_naming_only_the_id(services: Services) -> None:
    await keys.check(services)
    impostor = with_ring(services, Keyring.parse(generate_key("t1")))
    with pytest.raises(KeyMismatch) as refused:
        await keys.check(impostor)
    assert str(refused.value) == WRONG_T1 and await keys.mismatch(impostor) == WRONG_T1
    assert not [m for m in material(impostor.keyring) + material(services.keyring) if m in str(refused.value)]
    assert list(await stored(services)) == ["t1"]  # nothing recorded for the refused ring


async def test_a_rotation_records_the_new_key_and_a_ring_without_any_known_id_is_refused(services: Services) -> None:
    await keys.check(services)
    new = Keyring.parse(generate_key("t2"))
    rotating = with_ring(services, Keyring(keys={**new.keys, **services.keyring.keys}, active="t2"))
    await keys.check(rotating)
    assert sorted(await stored(services)) == ["t1", "t2"]
    await keys.check(with_ring(services, new))  # the old key retired after re-encryption: still known
    stranger = with_ring(services, Keyring.parse(generate_key("zz9")))
    with pytest.raises(KeyMismatch, match=r"written with the key id\(s\) 't1', 't2', and CONSENTBOT_ENCRYPTION_KEY "
                                          r"holds none of them \(it holds 'zz9'\)"):
        await keys.check(stranger)


async def test_readyz_is_503_with_the_reason_while_the_key_does_not_match(services: Services, db_url: str) -> None:
    await keys.check(services)
    for svc, status in ((with_ring(services, Keyring.parse(generate_key("t1"))), 503), (services, 200)):
        app = build_app(Settings(DATABASE_URL=db_url), svc)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            response = await client.get("/readyz")
        assert response.status_code == status
        assert response.json()["status"] == (WRONG_T1 if status == 503 else "ready")


async def first_start(bot: Bot) -> None:
    svc = Services(db=create_database(bot.database_url), keyring=Keyring.parse(bot.key), policy=england())
    await keys.check(svc)  # what the first command's start does: record k1's check value
    await svc.db.dispose()


def test_commands_and_serve_refuse_a_wrong_key_in_one_line_but_db_upgrade_runs(tmp_path: Path) -> None:
    bot = Bot(database_url=f"sqlite+aiosqlite:///{tmp_path}/consentbot.db", workdir=tmp_path)
    setup_school(bot)
    asyncio.run(first_start(bot))
    right, bot.key = bot.key, generate_key("k1")
    wrong = "the key with id 'k1' in CONSENTBOT_ENCRYPTION_KEY is not the one this database was written with"
    for command in (("staff", "list"), ("serve",)):
        bot.in_process = command != ("serve",)  # `serve` starts as a process: a regression would serve here
        done = bot.run(*command, check=False)
        assert done.returncode == 1 and done.stderr.splitlines()[-1] == f"error: {wrong}", done.stderr
        assert "Traceback" not in done.stderr and bot.key.split(":")[1][:16] not in done.stderr
        assert right.split(":")[1][:16] not in done.stderr
    assert "database is at migration" in bot.run("db", "upgrade").stdout
