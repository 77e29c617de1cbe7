"""Configuration that cannot silently drift: the settings file is named, not guessed from the
current folder; production refuses development settings; `serve` refuses a database that is not
migrated; every refusal is one line naming the cause. Each test drives the real `consentbot`: as a
process where starting one is what is tested, else in this process through typer's runner.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from bot.config import ENV_FILE_VARIABLE, Settings, SettingsFileError
from bot.crypto import generate_key
from storage.db import create_database
from storage.migrate import head_revision, upgrade
from tests.cli.harness import CONSENTBOT, run_in_process

SCOPED = ("CONSENTBOT_", "SLACK_", "TEAMS_", "DATABASE_URL")


def consentbot(*args: str, cwd: Path, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`consentbot ARGS` in `cwd` with none of the caller's settings, only `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(SCOPED)}
    return subprocess.run([CONSENTBOT, *args], cwd=cwd, env={**clean, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout, check=False)


def in_process(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The same command through typer's runner in this process, with only `env` (no process start,
    ~1 s less each): for refusals that happen before anything is served (`serve` fails at once if
    it gets as far as serving).
    """
    return run_in_process(*args, env=env or {}, cwd=cwd)


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr.strip().splitlines()[-1]


@pytest.fixture
def service(tmp_path: Path) -> Path:
    """A deployment's folder with its settings file: a relative SQLite path, as .env.example has."""
    folder = tmp_path / "srv" / "consentbot"
    folder.mkdir(parents=True)
    (folder / "settings.env").write_text("DATABASE_URL=sqlite+aiosqlite:///./data/consentbot.db\n"
                                         f"CONSENTBOT_ENCRYPTION_KEY={generate_key('k1')}\n")
    (folder / "data").mkdir()
    return folder / "settings.env"


def test_the_cli_from_another_folder_uses_the_database_the_named_file_names(service: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    (elsewhere / ".env").write_text("DATABASE_URL=sqlite+aiosqlite:///./wrong.db\n")  # a stray .env is not read
    named = {ENV_FILE_VARIABLE: str(service)}

    upgraded = in_process("db", "upgrade", cwd=elsewhere, env=named)
    assert upgraded.returncode == 0, upgraded.stderr
    added = in_process("staff", "add", "dee@oak.sch.uk", "--role", "dsl", "--name", "Dee DSL", "--school", "oak",
                       "--create-school", cwd=elsewhere, env=named)
    assert added.returncode == 0, added.stderr
    # The same database from its own folder (a process), and through --config from a third.
    assert "dee@oak.sch.uk" in consentbot("staff", "list", cwd=service.parent, env=named).stdout
    listed = in_process("--config", str(service), "staff", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "dee@oak.sch.uk" in listed.stdout, listed.stderr

    assert (service.parent / "data" / "consentbot.db").exists()
    assert sorted(p.name for p in elsewhere.iterdir()) == [".env"]  # no database, no key made here
    assert not (tmp_path / "consentbot.db").exists()


def test_without_a_named_file_the_env_of_the_current_folder_is_read_as_before(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DATABASE_URL=sqlite+aiosqlite:///./here.db\n")
    upgraded = in_process("db", "upgrade", cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "here.db").exists() and (tmp_path / "here.db.key").exists()


def test_a_named_file_that_is_not_there_is_refused_not_ignored(tmp_path: Path) -> None:
    missing = tmp_path / "etc" / "consentbot.env"
    for done in (consentbot("staff", "list", cwd=tmp_path, env={ENV_FILE_VARIABLE: str(missing)}),
                 in_process("--config", str(missing), "staff", "list", cwd=tmp_path)):
        assert error_line(done) == f"error: {ENV_FILE_VARIABLE} names {missing}, which is not a readable file"
    assert list(tmp_path.iterdir()) == []


def test_the_environment_wins_over_the_file_and_paths_from_it_are_not_moved(service: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(service))
    assert Settings().database_url == f"sqlite+aiosqlite:///{service.parent}/data/consentbot.db"
    monkeypatch.setenv("DATABASE_URL", "sqlite+aiosqlite:///./mine.db")
    assert Settings().database_url == "sqlite+aiosqlite:///./mine.db"  # relative to where it was typed
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(tmp_path / "nothing.env"))
    with pytest.raises(SettingsFileError):
        Settings()


def test_production_refuses_a_development_key_in_one_line(tmp_path: Path) -> None:
    dev = generate_key("dev0a1b2c3d")  # what the development key file holds
    done = in_process("staff", "list", cwd=tmp_path, env={
        "CONSENTBOT_ENV": "production", "CONSENTBOT_ENCRYPTION_KEY": dev,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/prod.db"})
    assert error_line(done).startswith("error: production refuses the development key 'dev0a1b2c3d' as the active key")
    assert dev.split(":")[1][:12] not in done.stderr and not (tmp_path / "prod.db").exists()
    # Kept after a real key, it still reads what it wrote: refused only as the active key.
    rotated = in_process("db", "upgrade", cwd=tmp_path, env={
        "CONSENTBOT_ENV": "production", "CONSENTBOT_ENCRYPTION_KEY": f"{generate_key('k2')},{dev}",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/prod.db"})
    assert rotated.returncode == 0, rotated.stderr


@pytest.mark.parametrize(("database", "says"), [
    (None, "error: production needs DATABASE_URL: it is not set"),
    ("sqlite+aiosqlite:///./consentbot.db", "error: production needs an absolute SQLite path in DATABASE_URL"),
])
def test_production_refuses_a_missing_or_folder_relative_database(tmp_path: Path, database: str | None,
                                                                  says: str) -> None:
    env = {"CONSENTBOT_ENV": "production", "CONSENTBOT_ENCRYPTION_KEY": generate_key("k1")}
    if database:
        env["DATABASE_URL"] = database
    done = in_process("serve", cwd=tmp_path, env=env)
    assert error_line(done).startswith(says)
    assert list(tmp_path.iterdir()) == []  # no database made in the folder it happened to run in


def test_serve_refuses_an_unmigrated_database_with_the_command_to_run(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/new.db", "CONSENTBOT_ENCRYPTION_KEY": generate_key("k1"),
           "PORT": "9", "HOST": "127.0.0.1"}
    done = in_process("serve", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert error_line(done) == "error: the database has no tables yet: run `consentbot db upgrade`"
    assert "Uvicorn running" not in done.stderr and "sweep" not in done.stderr


def test_serve_refuses_pending_migrations_naming_both_revisions(tmp_path: Path) -> None:
    from alembic import command

    from storage.migrate import _config

    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"

    async def migrate_to_first() -> None:
        db = create_database(url)
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_config(c), "0001"))
        await db.dispose()

    asyncio.run(migrate_to_first())
    env = {"DATABASE_URL": url, "CONSENTBOT_ENCRYPTION_KEY": generate_key("k1")}
    done = in_process("serve", cwd=tmp_path, env=env)
    assert error_line(done) == (f"error: migrations pending (the database is at 0001, this version needs "
                                f"{head_revision()}): run `consentbot db upgrade`")


def test_a_command_on_an_unmigrated_database_names_the_migration_not_the_network(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/new.db", "CONSENTBOT_ENCRYPTION_KEY": generate_key("k1")}
    done = in_process("staff", "list", cwd=tmp_path, env=env)
    assert error_line(done) == "error: the database has no tables yet: run `consentbot db upgrade`"


def test_an_unreachable_database_is_named_as_such(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql+asyncpg://consentbot:secretpw@127.0.0.1:9/consentbot",
           "CONSENTBOT_ENCRYPTION_KEY": generate_key("k1"), "CONSENTBOT_DB_TIMEOUT_SECONDS": "1"}
    done = in_process("serve", cwd=tmp_path, env=env)
    assert error_line(done).startswith("error: cannot reach the database in DATABASE_URL")
    assert "secretpw" not in done.stderr


def test_a_migrated_database_serves(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/ok.db"

    async def migrate() -> None:
        db = create_database(url)
        await upgrade(db)
        await db.dispose()

    asyncio.run(migrate())
    from tests.test_app import free_port, wait_for

    env = {**{k: v for k, v in os.environ.items() if not k.startswith(SCOPED)}, "DATABASE_URL": url,
           "CONSENTBOT_ENCRYPTION_KEY": generate_key("k1"), "PORT": str(port := free_port()), "HOST": "127.0.0.1",
           "CONSENTBOT_SCHEDULER": "false"}
    server = subprocess.Popen([CONSENTBOT, "serve"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/readyz").json() == {"status": "ready"}
    finally:
        server.terminate()
        logs = server.communicate(timeout=30)[1]
    assert server.returncode in (0, -15) and "Traceback" not in logs, logs  # uvicorn re-raises the SIGTERM it handled


def test_the_suite_reads_no_env_file_wherever_it_runs(tmp_path: Path) -> None:
    """tests/conftest.py: a developer's .env (here, in the test's folder) switches nothing on."""
    assert Path.cwd() == tmp_path
    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=xoxb-real\nSLACK_SIGNING_SECRET=real\nDATABASE_URL=sqlite+aiosqlite:///x.db\n")
    settings = Settings()
    assert not settings.slack_configured and settings.database_url_is_default
    assert os.environ[ENV_FILE_VARIABLE] == os.devnull
