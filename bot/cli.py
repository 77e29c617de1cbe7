"""The `consentbot` command. bot/cli.py and bot/app.py are the composition roots: the only
modules of bot/ that reach into handlers/ (lazily), to wire the platforms in.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from bot.errors import BotError

if TYPE_CHECKING:
    from bot.config import Settings

# `consentbot --help` must answer in well under 0.2 s (issue 12): this module and the cli_*
# modules that register commands import only typer at the top; the database, pydantic, the
# policy and the platforms are imported by the commands that use them. Help is click's plain
# text: typer's rich formatting alone imports ~0.15 s of rich.
app = typer.Typer(help="consentbot: the information-sharing consent checklist.", no_args_is_help=True,
                  pretty_exceptions_enable=False, rich_markup_mode=None)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True, rich_markup_mode=None)
staff_app = typer.Typer(help="People and their roles.", no_args_is_help=True, rich_markup_mode=None)
policy_app = typer.Typer(help="Checklist policy files.", no_args_is_help=True, rich_markup_mode=None)
audit_app = typer.Typer(help="The verifiable audit trail.", no_args_is_help=True, rich_markup_mode=None)
for sub, name in ((db_app, "db"), (staff_app, "staff"), (policy_app, "policy"), (audit_app, "audit")):
    app.add_typer(sub, name=name)

T = TypeVar("T")
ROLES = ("staff", "dsl", "deputy", "admin")


def fail(message: str, code: int = 1) -> None:
    """Print a clear error and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def run(make: Callable[[Any], Awaitable[T]], *, migrating: bool = False) -> T:
    """Build the services, check the key ring against the database, run one coroutine with
    them, close the database. `migrating` (`db upgrade` only) skips the key check: the table
    it reads may not exist yet.
    """
    _settings, services = _start(migrating=migrating)
    return _within(services, make, check_keys=not migrating)


def _start(*, migrating: bool = False) -> tuple[Settings, Any]:
    """The settings and the services (logging configured), or a one-line error."""
    from pydantic import ValidationError

    from bot.config import Settings, SettingsFileError, invalid_settings
    from bot.crypto import KeyringError
    from bot.policy.loader import PolicyError
    from bot.runtime import DatabaseUrlError, ProductionRefused, build_services, configure_logging

    try:
        settings = Settings()
    except ValidationError as exc:  # names the settings only: a value may be a secret
        fail(f"invalid setting: {invalid_settings(exc)}")
    except SettingsFileError as exc:
        fail(str(exc))
    configure_logging(settings)
    _log_settings_source(settings)
    try:
        return settings, build_services(settings, migrating=migrating)
    except (KeyringError, PolicyError, DatabaseUrlError, ProductionRefused, OSError) as exc:
        fail(str(exc))
    raise AssertionError("unreachable")


def _log_settings_source(settings: Settings) -> None:
    """Say which settings file was read: a command run from the wrong folder shows it at once."""
    import logging

    from bot.config import settings_file

    file = settings_file()
    source = str(file.resolve()) if file is not None and file.is_file() else "the environment only"
    logging.getLogger(__name__).debug("settings from %s (env=%s)", source, settings.env)


def _within(services: Any, make: Callable[[Any], Awaitable[T]], *, check_keys: bool, check_schema: bool = False) -> T:
    """Run `make(services)` after the key check (and with `check_schema`, `serve`'s, the schema
    check first), close the database. Errors become one line naming the cause: the database
    unreachable, migrations pending, or the wrong key.
    """
    import asyncio

    from sqlalchemy.exc import DBAPIError

    from bot.keys import check
    from bot.runtime import schema_problem

    async def go() -> T:
        try:
            if check_schema and (problem := await schema_problem(services.db)):
                raise SchemaNotCurrent(problem)
            if check_keys:
                await check(services)
            return await make(services)
        finally:
            await services.db.dispose()

    try:
        return asyncio.run(go())
    except BotError as exc:  # bot.keys.KeyMismatch and SchemaNotCurrent among them
        fail(str(exc))
    except (OSError, DBAPIError) as exc:  # the message names the type only: driver errors may quote the URL
        fail(_database_problem(services) or f"cannot reach the database in DATABASE_URL ({type(exc).__name__}). "
                                            "Is it running, and is the URL right?")
    raise AssertionError("unreachable")


def _database_problem(services: Any) -> str | None:
    """After a database error: the schema's problem when the database answers (a missing table is
    a pending migration, not an unreachable database); None when it does not.
    """
    import asyncio

    from sqlalchemy.exc import DBAPIError

    from bot.runtime import schema_problem

    async def go() -> str | None:
        try:
            return await schema_problem(services.db)
        finally:
            await services.db.dispose()

    try:
        return asyncio.run(go())
    except (OSError, DBAPIError):
        return None


class SchemaNotCurrent(BotError):
    """The database is not at the migration this version needs (the message says what to run)."""


@app.callback()
def options(config: Path | None = typer.Option(
        None, "--config", dir_okay=False,
        help="The settings file to read (else the one CONSENTBOT_ENV_FILE names, else .env in this folder).")) -> None:
    """Options for every command."""
    from bot.config import ENV_FILE_VARIABLE

    if config is not None:  # the environment, so every Settings() of this process (and its children) reads it
        os.environ[ENV_FILE_VARIABLE] = str(config.expanduser().resolve())


@app.command()
def keygen() -> None:
    """Print a new encryption key for CONSENTBOT_ENCRYPTION_KEY."""
    from bot.crypto import generate_key

    typer.echo(generate_key())


@app.command()
def serve() -> None:
    """Start the web app (HOST, PORT), once the database is migrated and the key ring fits it.
    On SIGTERM it stops taking requests, then sends what is left in the outbox
    (CONSENTBOT_SHUTDOWN_SECONDS each, at most).
    """
    import asyncio

    import uvicorn

    from bot.app import build_app, freeze_startup_heap
    from bot.server import guarded_protocol

    settings, services = _start()
    # Before listening: an unmigrated database is refused with the command to run, and a wrong key
    # must not write a single row. The checks' connections are closed with their event loop;
    # uvicorn's loop opens its own.
    _within(services, lambda _svc: asyncio.sleep(0), check_keys=True, check_schema=True)
    # Limits, so that idle or slow clients cannot starve the server (bot/server.py; the body limit
    # is the app's, bot/app.py). h11 always, even if httptools is installed: the header size limit
    # (h11_max_incomplete_event_size) and the request deadline are h11's.
    try:
        web = build_app(settings, services)
    except RuntimeError as refused:  # a platform's settings cannot be served safely (handlers.teams)
        fail(str(refused))
    freeze_startup_heap()
    uvicorn.run(web, host=settings.host, port=settings.port, log_config=None,
                http=guarded_protocol(read_timeout=settings.read_timeout_seconds),
                limit_concurrency=settings.max_connections, backlog=settings.backlog,
                timeout_keep_alive=settings.keep_alive_seconds, timeout_graceful_shutdown=settings.shutdown_seconds,
                h11_max_incomplete_event_size=settings.max_header_bytes)


@db_app.command("upgrade")
def db_upgrade(as_: str | None = typer.Option(None, "--as", help="Your email, as registered with `staff add` "
                                                                  "(the access log names you, else the OS user)")) -> None:
    """Create or migrate the database schema to the newest version; then, once, adopt the audit
    history written before keyed chains under the key (docs/audit.md).
    """
    from bot import keys, people
    from bot.audit_adopt import adopt_legacy
    from storage.migrate import head_revision, upgrade

    async def go(svc: Any) -> tuple[Any, str | None]:
        await upgrade(svc.db)
        # Migrating needs no key, but adopting must be under the key the database was written with.
        if reason := await keys.mismatch(svc):
            return None, reason
        return await adopt_legacy(svc, by=await people.operator(svc, email=as_)), None

    adopted, refused = run(go, migrating=True)
    typer.echo(f"database is at migration {head_revision()}")
    if refused:
        typer.echo(f"warning: the audit history was not adopted: {refused}", err=True)
    elif adopted:
        typer.echo(f"adopted the audit history written before keyed chains: {adopted.cases} case chains, "
                   f"{adopted.staff} staff records, {adopted.access_entries} access log entries (docs/audit.md)")


@policy_app.command("check")
def policy_check(file: Path) -> None:
    """Validate a policy file; prints every problem with its line."""
    from bot.policy.loader import PolicyError, load_policy

    try:
        policy = load_policy(file)
    except PolicyError as exc:
        fail(f"policy is invalid:\n{exc}")
    typer.echo(f"{file}: ok: policy {policy.id} {policy.version}, {len(policy.steps)} steps")


@policy_app.command("diagram")
def policy_diagram(file: Path = typer.Argument(None), out: Path | None = typer.Option(None)) -> None:
    """Print (or write to --out) the mermaid diagram of a policy's flow."""
    from bot.policy.diagram import render_markdown
    from bot.policy.loader import DEFAULT_POLICY, PolicyError, load_policy

    try:
        text = render_markdown(load_policy(file or DEFAULT_POLICY))
    except PolicyError as exc:
        fail(f"policy is invalid:\n{exc}")
    if out:
        out.write_text(text)
    else:
        typer.echo(text, nl=False)


def main() -> None:
    """Console script entry point."""
    from bot import (
        cli_admin,  # noqa: F401 - registers school and doctor commands
        cli_children,  # noqa: F401 - registers chronology
        cli_commands,  # noqa: F401 - registers staff, chat, export and audit commands
        cli_directory,  # noqa: F401 - registers staff sync-teams
        cli_outbox,  # noqa: F401 - registers outbox retry
        cli_people,  # noqa: F401 - registers staff edit, reactivate and import
        cli_reminders,  # noqa: F401 - registers remind, digest, reminders and calendar commands
        cli_slack,  # noqa: F401 - registers slack workspaces and link
        cli_teams,  # noqa: F401 - registers teams package
    )

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
