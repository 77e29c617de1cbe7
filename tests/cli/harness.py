"""Drive the real `consentbot` command in a subprocess, as a school's IT person would."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot import people
from bot.cases import Services
from bot.crypto import Keyring, generate_key
from bot.policy.loader import DEFAULT_POLICY, load_policy
from bot.policy.model import Policy
from storage.db import create_database
from storage.migrate import upgrade
from tests.conftest import england

CONSENTBOT = str(Path(sys.executable).with_name("consentbot"))
NOTIFICATION = "[notification to "


@dataclass
class Bot:
    """One deployment: a database, a key, a policy; every call is a fresh process, or with
    `in_process` a fresh run of the command in this one.
    """

    database_url: str
    workdir: Path
    policy: Path | None = None
    slack: bool = True
    key: str = field(default_factory=lambda: generate_key("k1"))
    stderr: list[str] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)  # applied last, e.g. {"SLACK_BOT_TOKEN": ""} turns Slack off
    # In this process through typer's runner (the same command, arguments and output, but no
    # process start, ~1 s each): for tests of what commands print, not of logs or processes.
    in_process: bool = False

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(SCOPED)}
        env.update(DATABASE_URL=self.database_url, CONSENTBOT_ENCRYPTION_KEY=self.key, CONSENTBOT_LOG_LEVEL="DEBUG")
        if self.slack:  # Slack configured, so people with a Slack id can be reached (nothing is sent from `chat`)
            env.update(SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET="test-signing-secret",
                       SLACK_API_URL="http://127.0.0.1:9/api/")
        if self.policy:
            env["CONSENTBOT_POLICY"] = str(self.policy)
        env.update(self.extra_env)
        return env

    def run(self, *args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
        if self.in_process:
            done = self._run_here(args, stdin)
        else:
            done = subprocess.run([CONSENTBOT, *args], input=stdin, capture_output=True, text=True, env=self.env(),
                                  cwd=self.workdir, timeout=120, check=False)
        self.stdout.append(done.stdout)
        self.stderr.append(done.stderr)
        if check and done.returncode != 0:
            raise AssertionError(f"consentbot {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def _run_here(self, args: tuple[str, ...], stdin: str) -> subprocess.CompletedProcess[str]:
        return run_in_process(*args, env=self.env(), cwd=self.workdir, stdin=stdin)

    def chat(self, email: str, *lines: str, case: str | None = None) -> str:
        args = ["chat", "--as", email] + (["--case", case] if case else [])
        return self.run(*args, stdin="\n".join(lines) + "\n").stdout

    def export(self, ref: str) -> dict[str, Any]:
        return json.loads(self.run("export", ref, "--format", "json").stdout)

    def notifications(self) -> list[str]:
        return [line for out in self.stdout for line in out.splitlines() if line.startswith(NOTIFICATION)]


SCOPED = ("CONSENTBOT_", "SLACK_", "TEAMS_")


def run_in_process(*args: str, env: dict[str, str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`consentbot ARGS` through typer's runner in this process, as `main()` runs it (every command
    registered), in `cwd`, with only the settings in `env` (the caller's CONSENTBOT_, SLACK_ and
    TEAMS_ variables unset): the same command, arguments and output, without ~1 s of process start.
    An exception that escapes is on stderr with its traceback, as a process would print it.
    """
    from typer.testing import CliRunner

    from bot import cli as command

    for module in ("cli_admin", "cli_children", "cli_commands", "cli_directory", "cli_outbox", "cli_people",
                   "cli_reminders", "cli_slack", "cli_teams"):
        __import__(f"bot.{module}")
    scoped: dict[str, str | None] = {k: None for k in os.environ if k.startswith(SCOPED)}
    before = os.getcwd()
    os.chdir(cwd)  # the settings read .env from the current folder
    try:
        with parsed_once(), never_serving():
            result = CliRunner().invoke(command.app, list(args), input=stdin, env={**scoped, **env})
    finally:
        os.chdir(before)
    escaped = result.exception if not isinstance(result.exception, SystemExit) else None
    stderr = result.stderr + ("".join(traceback.format_exception(escaped)) if escaped else "")
    return subprocess.CompletedProcess([CONSENTBOT, *args], result.exit_code, result.stdout, stderr)


_POLICIES: dict[tuple[Path, bytes], Policy] = {}


@contextmanager
def parsed_once() -> Iterator[None]:
    """Commands run in this process load each policy file once: `bot.runtime` gets the Policy
    `load_policy` built for the same file with the same bytes (immutable data), not a second parse
    of its YAML (~0.05 s a command). A file that fails to load fails every time, as in a process.
    """
    from bot import runtime

    def load_policy_once(path: str | Path = DEFAULT_POLICY) -> Policy:
        key = (Path(path).resolve(), Path(path).read_bytes()) if Path(path).is_file() else None
        if key is None:
            return load_policy(path)
        if key not in _POLICIES:
            _POLICIES[key] = load_policy(path)
        return _POLICIES[key]

    runtime.load_policy = load_policy_once  # type: ignore[assignment]
    try:
        yield
    finally:
        runtime.load_policy = load_policy  # type: ignore[assignment]


@contextmanager
def never_serving() -> Iterator[None]:
    """`serve` run here fails at once if it gets as far as serving (in a test of its refusals, a
    regression would otherwise serve until killed): everything before uvicorn runs as it is.
    """
    import uvicorn

    def serving(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("`consentbot serve` started serving")

    real = uvicorn.run
    uvicorn.run = serving  # type: ignore[assignment]
    try:
        yield
    finally:
        uvicorn.run = real


def case_ref(output: str) -> str:
    """The reference printed when a concern is raised."""
    for line in output.splitlines():
        if line.startswith("Concern raised as case "):
            return line.removeprefix("Concern raised as case ").rstrip(".")
    raise AssertionError(f"no case raised in:\n{output}")


PEOPLE = (("tina@oak.sch.uk", "staff", "Tina Teacher", "U0TINA0001"),
          ("dee@oak.sch.uk", "dsl", "Dee DSL", "U0DEE00001"),
          ("pat@oak.sch.uk", "deputy", "Pat Deputy", "U0PAT00001"))


def setup_school(bot: Bot, *, through_cli: bool = False) -> None:
    """Migrate, and register the people of one school: in-process for speed, or through the CLI."""
    if through_cli:
        bot.run("db", "upgrade")
        for i, (email, role, name, slack_id) in enumerate(PEOPLE):
            bot.run("staff", "add", email, "--role", role, "--name", name, "--school", "oak", "--slack-id", slack_id,
                    *(["--create-school"] if i == 0 else []))
        return
    asyncio.run(_setup(bot))


async def _setup(bot: Bot) -> None:
    svc = Services(db=create_database(bot.database_url), keyring=Keyring.parse(bot.key), policy=england())
    try:
        await upgrade(svc.db)
        for email, role, name, slack_id in PEOPLE:
            await people.add(svc, email=email, role=role, name=name, school="oak", slack_user_id=slack_id)
    finally:
        await svc.db.dispose()
