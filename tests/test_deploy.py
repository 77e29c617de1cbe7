"""Install anywhere, a container, a service: the lock matches pyproject.toml, `make run` installs no
dev tools, the container files say what docs/deploy.md says they do (checked without a container
daemon: there is none on CI), the systemd unit verifies, and the production start that the
compose file and the unit both perform is run here for real, then stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bot.config import ENV_FILE_VARIABLE, Settings
from tests.cli.harness import CONSENTBOT
from tests.conftest import postgres_url

ROOT = Path(__file__).parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCK = tomllib.loads((ROOT / "uv.lock").read_text())
RUN_EXTRAS = ("slack", "teams", "postgres")
DEV_TOOLS = ("pytest", "ruff", "mypy", "hypothesis", "pytest-xdist", "uv")
SETTINGS = {f.alias for f in Settings.model_fields.values() if f.alias} | {ENV_FILE_VARIABLE}
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)", re.M)


# --- the lock ------------------------------------------------------------------------------------

def _declared() -> set[tuple[str, str, str, str | None]]:
    """pyproject.toml's requirements as (name, extras, specifier, extra it belongs to)."""
    found = set()
    groups = [(None, PYPROJECT["project"]["dependencies"])]
    groups += list(PYPROJECT["project"]["optional-dependencies"].items())
    for extra, reqs in groups:
        for text in reqs:
            req = Requirement(text)
            found.add((canonicalize_name(req.name), ",".join(sorted(req.extras)), str(req.specifier), extra))
    return found


def _locked() -> set[tuple[str, str, str, str | None]]:
    [root] = [p for p in LOCK["package"] if p["name"] == "consentbot"]
    found = set()
    for dep in root["metadata"]["requires-dist"]:
        extra = re.fullmatch(r"extra == '([a-z]+)'", dep.get("marker", "extra == ''")) if "marker" in dep else None
        specifier = str(Requirement(f"x{dep.get('specifier', '')}").specifier)
        found.add((canonicalize_name(dep["name"]), ",".join(sorted(dep.get("extras", []))), specifier,
                   extra.group(1) if extra else None))
    return found


def test_the_lock_was_made_from_this_pyproject() -> None:
    """Fails when a dependency changed without `make lock`."""
    assert _locked() == _declared(), "uv.lock is out of date with pyproject.toml: run `make lock`"
    assert LOCK["requires-python"].replace(" ", "") == PYPROJECT["project"]["requires-python"] == ">=3.11,<3.14"


def _pins(name: str) -> dict[str, str]:
    text = (ROOT / "requirements" / name).read_text()
    pins = {canonicalize_name(n): v for n, v in PIN.findall(text)}
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert all("--hash=sha256:" in block for block in blocks if PIN.match(block)), f"{name}: a pin without a hash"
    return pins


def test_the_exported_requirements_are_the_lock_and_running_needs_no_dev_tools() -> None:
    versions = {canonicalize_name(p["name"]): p["version"] for p in LOCK["package"]}
    run, dev = _pins("run.txt"), _pins("dev.txt")
    assert run and all(versions[n] == v for n, v in run.items()), "requirements/run.txt: run `make lock`"
    assert all(versions[n] == v for n, v in dev.items()), "requirements/dev.txt: run `make lock`"
    assert run.items() <= dev.items()
    assert not set(run) & {canonicalize_name(t) for t in DEV_TOOLS}
    needed = {name for name, _, _, extra in _declared() if extra is None or extra in RUN_EXTRAS}
    assert needed <= set(run), f"missing from requirements/run.txt: {needed - set(run)}"
    assert {name for name, _, _, extra in _declared() if extra == "dev"} <= set(dev)


def _make(*args: str, tmp_path: Path) -> str:
    done = subprocess.run(["make", "-n", *args, f"VENV={tmp_path}/venv", f"PYTHON={sys.executable}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_installs_what_running_needs_and_make_test_the_dev_tools_too(tmp_path: Path) -> None:
    run, test = _make("run", tmp_path=tmp_path), _make("test", tmp_path=tmp_path)
    assert "--require-hashes -r requirements/run.txt" in run and "dev.txt" not in run and "[dev" not in run
    assert "--require-hashes -r requirements/dev.txt" in test
    assert "consentbot db upgrade" in run and run.index("db upgrade") < run.index("consentbot serve")


def test_ci_runs_the_newest_and_the_oldest_python() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'run "$newest" lint typecheck test' in ci and 'run "$oldest" test-sqlite' in ci
    assert "for version in 3.11 3.12 3.13" in ci


# --- the container -------------------------------------------------------------------------------

def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    instructions = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def test_the_image_is_slim_runs_as_a_user_and_installs_only_from_the_lock() -> None:
    text = (ROOT / "Dockerfile").read_text()
    final = dict(_dockerfile())
    assert re.fullmatch(r"python:3\.1[1-3]-slim\S*", final["FROM"])
    assert final["USER"] not in ("root", "0") and not final["USER"].startswith("0:")
    assert re.search(r"useradd .*--uid 10001 .*consentbot", final["RUN"])
    installs = re.findall(r"pip install ([^\n]+)", text)
    assert installs == ["--require-hashes -r /tmp/requirements-run.txt", "--no-deps /src"], installs
    assert "COPY requirements/run.txt" in text
    assert final["CMD"] == '["consentbot", "serve"]' and "/healthz" in final["HEALTHCHECK"]
    assert "CONSENTBOT_ENV_FILE=/dev/null" in final["ENV"] and "HOST=0.0.0.0" in final["ENV"]


def test_the_build_context_holds_no_secrets_or_databases() -> None:
    rules = [r.strip() for r in (ROOT / ".dockerignore").read_text().splitlines() if r.strip() and r[0] != "#"]
    assert rules[0] == "*"  # everything out, then only what the image is built from
    assert {"**/.env", "**/*.db", "**/*.key"} <= set(rules)
    included = {r[1:] for r in rules if r.startswith("!")}
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M))
    assert {p for line in copied for p in line.split()} <= included


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def _seconds(value: str) -> float:
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", value))


def test_compose_runs_postgresql_migrates_before_serving_and_checks_readiness() -> None:
    services = _compose()["services"]
    db, bot = services["db"], services["bot"]
    assert db["image"].startswith("postgres:") and "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert bot["depends_on"] == {"db": {"condition": "service_healthy"}}
    command = " ".join(bot["command"])
    assert re.search(r"consentbot db upgrade && exec consentbot serve", command)
    assert "/readyz" in " ".join(bot["healthcheck"]["test"])
    env = bot["environment"]
    assert env["CONSENTBOT_ENV"] == "production"
    assert env["DATABASE_URL"].startswith("postgresql+asyncpg://consentbot:${POSTGRES_PASSWORD:?")
    assert env["DATABASE_URL"].endswith("@db:5432/consentbot")
    assert env["CONSENTBOT_ENCRYPTION_KEY"].startswith("${CONSENTBOT_ENCRYPTION_KEY:?")  # required, never a default
    assert set(env) <= SETTINGS, f"names bot/config.py does not read: {set(env) - SETTINGS}"
    assert bot["ports"] == ["127.0.0.1:3000:3000"]


def test_compose_gives_serve_time_to_finish_its_outbox() -> None:
    bot = _compose()["services"]["bot"]
    shutdown = float(bot["environment"]["CONSENTBOT_SHUTDOWN_SECONDS"])
    # Requests in flight, then the outbox, each bounded by CONSENTBOT_SHUTDOWN_SECONDS, plus margin.
    assert _seconds(bot["stop_grace_period"]) >= 2 * shutdown + 5


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")
def test_the_compose_file_is_valid_for_docker_compose() -> None:
    """`docker compose config` when the plugin is there (a documented manual step otherwise)."""
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed: docs/deploy.md, 'Checking the container files'")
    env = {**os.environ, "POSTGRES_PASSWORD": "x" * 48, "CONSENTBOT_ENCRYPTION_KEY": "k1:" + "A" * 43 + "="}
    done = subprocess.run(["docker", "compose", "-f", str(ROOT / "compose.yaml"), "config", "--quiet"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


# --- the systemd unit ----------------------------------------------------------------------------

def _unit() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (ROOT / "deploy" / "consentbot.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_the_unit_names_its_settings_file_migrates_first_and_waits_for_the_outbox() -> None:
    unit = _unit()
    assert unit["Environment"] == [f"{ENV_FILE_VARIABLE}=/etc/consentbot/consentbot.env"]
    assert unit["ExecStartPre"] == ["/opt/consentbot/venv/bin/consentbot db upgrade"]
    assert unit["ExecStart"] == ["/opt/consentbot/venv/bin/consentbot serve"]
    assert unit["User"] == ["consentbot"] and _seconds(unit["TimeoutStopSec"][0] + "s") >= 25


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_unit_verifies(tmp_path: Path) -> None:
    unit = tmp_path / "consentbot.service"
    unit.write_text((ROOT / "deploy" / "consentbot.service").read_text()
                    .replace("/opt/consentbot/venv/bin/consentbot", CONSENTBOT))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr


# --- docs/deploy.md ------------------------------------------------------------------------------

def test_deploy_md_names_only_real_settings_files_and_commands() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    named = set(re.findall(r"\b((?:CONSENTBOT|SLACK|TEAMS)_[A-Z_]+|DATABASE_URL)\b", doc))
    assert named and named <= SETTINGS | {"CONSENTBOT_TEST_DATABASE_URL"}, named - SETTINGS
    for path in re.findall(r"`((?:deploy|docs)/[\w./-]+|compose\.yaml|Dockerfile|\.dockerignore)`", doc):
        assert (ROOT / path).exists(), path
    from typer.testing import CliRunner

    from bot import cli

    for module in ("cli_admin", "cli_commands"):  # main() registers their commands so
        __import__(f"bot.{module}")
    commands = set(re.findall(r"consentbot ((?:db upgrade|serve|keygen|doctor|audit verify|audit checkpoint))", doc))
    assert {"db upgrade", "serve", "keygen", "doctor"} <= commands
    for command in commands:
        assert CliRunner().invoke(cli.app, [*command.split(), "--help"]).exit_code == 0, command
    assert "/readyz" in doc and "pg_dump" in doc and "reverse_proxy" in doc
    assert "docs/deploy.md" in (ROOT / "README.md").read_text()


async def _empty_pg_database(base: str) -> tuple[str, str]:
    from tests.conftest import _create_pg_database

    return await _create_pg_database(base)


def test_the_documented_production_start_runs_and_stops_cleanly(tmp_path: Path) -> None:
    """docs/deploy.md's service route, as the unit and the container run it: a key from `consentbot
    keygen`, a settings file named by CONSENTBOT_ENV_FILE (production, PostgreSQL when the suite has
    one), `db upgrade`, `serve`, /readyz, then SIGTERM: a clean stop within the grace period.
    """
    from tests.conftest import _drop_pg_database
    from tests.test_app import free_port, wait_for

    base = postgres_url()
    created = asyncio.run(_empty_pg_database(base)) if base else None
    url = created[0] if created else f"sqlite+aiosqlite:///{tmp_path}/var/consentbot.db"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CONSENTBOT_", "SLACK_", "TEAMS_", "DATABASE_"))}
    try:
        key = subprocess.run([CONSENTBOT, "keygen"], capture_output=True, text=True, check=True, env=clean).stdout.strip()
        settings = tmp_path / "etc" / "consentbot.env"
        settings.parent.mkdir()
        (tmp_path / "var").mkdir()
        port = free_port()
        settings.write_text(f"CONSENTBOT_ENV=production\nDATABASE_URL={url}\nCONSENTBOT_ENCRYPTION_KEY={key}\n"
                            f"HOST=127.0.0.1\nPORT={port}\nCONSENTBOT_SHUTDOWN_SECONDS=5\n")
        env = {**clean, ENV_FILE_VARIABLE: str(settings)}
        upgraded = subprocess.run([CONSENTBOT, "db", "upgrade"], cwd=tmp_path / "var", env=env, capture_output=True,
                                  text=True, timeout=120, check=False)
        assert upgraded.returncode == 0, upgraded.stderr
        server = subprocess.Popen([CONSENTBOT, "serve"], cwd=tmp_path / "var", env=env, stderr=subprocess.PIPE,
                                  text=True)
        try:
            assert wait_for(f"http://127.0.0.1:{port}/readyz").json() == {"status": "ready"}
            assert wait_for(f"http://127.0.0.1:{port}/healthz").status_code == 200
        finally:
            stopping = time.monotonic()
            server.send_signal(signal.SIGTERM)
            logs = server.communicate(timeout=30)[1]
        assert time.monotonic() - stopping < 15  # well within compose's and the unit's 30 s
        assert server.returncode in (0, -signal.SIGTERM) and "Traceback" not in logs, logs
        assert "Application shutdown complete" in logs and "DEVELOPMENT ONLY" not in logs
        assert key.split(":")[1][:12] not in logs
    finally:
        if created and base:
            asyncio.run(_drop_pg_database(base, created[1]))


# --- graceful shutdown: the outbox is finished, within its bound -----------------------------------

async def test_a_stopped_sender_sends_what_is_left_then_stops_within_its_bound(migrated_sqlite_url: str,
                                                                               fake_slack: Any) -> None:
    from bot import sender
    from handlers.slack import sender_platform
    from tests.slack.conftest import make_services, slack_settings
    from tests.slack.test_sender import delivered_keys, queue, recipients

    svc = await make_services(migrated_sqlite_url)
    try:
        to = await recipients(svc, 2)
        await queue(svc, to, 4)
        platform = sender_platform(slack_settings(fake_slack))
        stopped = asyncio.Event()
        stopped.set()  # SIGTERM came before the sender's next pass

        await sender.run(svc, platform, stop=stopped)
        assert delivered_keys(fake_slack, to) == []  # without a last pass, what the last requests queued waits

        await sender.run(svc, platform, stop=stopped, drain_on_stop=10)
        assert sorted(delivered_keys(fake_slack, to)) == ["test:0", "test:1", "test:2", "test:3"]

        await queue_more(svc, to)
        fake_slack.delay_next("chat.postMessage", seconds=3, times=10)
        started = time.monotonic()
        await sender.run(svc, platform, stop=stopped, drain_on_stop=0.5)
        assert time.monotonic() - started < 2.5  # a platform that hangs does not hold the stop
    finally:
        await svc.db.dispose()


async def queue_more(svc: Any, to: list[Any]) -> None:
    from bot.messages import Kind, Message
    from storage import repo
    from storage.models import OutboxMessage, utcnow

    now = utcnow()
    async with svc.db.transaction() as s:
        await repo.enqueue(s, [OutboxMessage(school_id=to[0].school_id, recipient_id=to[0].id, platform="slack",
                                             kind=Kind.DECISION_NEEDED.value, dedupe_key="late:0", next_attempt_at=now,
                                             created_at=now, payload=Message(kind=Kind.DECISION_NEEDED, case_ref="C-9",
                                                                             step_title="T").to_json())])
