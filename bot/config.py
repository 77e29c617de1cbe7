"""Settings from the environment and a settings file (names are part of the interface contract).

The settings file is the one `CONSENTBOT_ENV_FILE` names (or `consentbot --config FILE`), else
`.env` in the current folder if there is one. Relative SQLite and policy paths in a named file,
and the default SQLite database, are relative to the file's folder: the CLI run from elsewhere
uses the same database and key as the service.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./consentbot.db"
SQLITE_PREFIX = "sqlite+aiosqlite:///"
ENV_FILE_VARIABLE = "CONSENTBOT_ENV_FILE"  # read from the environment only: it names the file


def invalid_settings(exc: ValidationError) -> str:
    """One line for settings that failed validation: the names of the bad ones (a value may be a
    secret), or what a combination lacks (our own words, which quote no value).
    """
    return ", ".join(str(e["loc"][0]) if e["loc"] else str(e["msg"]).removeprefix("Value error, ")
                     for e in exc.errors())


class SettingsFileError(ValueError):
    """The named settings file cannot be read. Never quotes its contents."""


def settings_file() -> Path | None:
    """The settings file to read: the one CONSENTBOT_ENV_FILE names (which must exist; `/dev/null`
    for none), else `.env` in the current folder (read only if it exists).
    """
    named = os.environ.get(ENV_FILE_VARIABLE, "").strip()
    if not named:
        return Path(".env")
    path = Path(named).expanduser()
    if path == Path(os.devnull):
        return None
    if not path.is_file():
        raise SettingsFileError(f"{ENV_FILE_VARIABLE} names {path}, which is not a readable file")
    return path.resolve()


class Settings(BaseSettings):
    """Everything the bot reads from its environment. Secrets never have defaults."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    env: Literal["development", "production"] = Field("development", alias="CONSENTBOT_ENV")
    database_url: str = Field(DEFAULT_DATABASE_URL, alias="DATABASE_URL")
    # Connect, lock-wait and statement timeout (storage/db.py): under Slack's 3 s, so a database
    # that hangs fails a request with an error in time instead of hanging it.
    db_timeout_seconds: float = Field(2.0, alias="CONSENTBOT_DB_TIMEOUT_SECONDS", gt=0, le=60)
    encryption_key: str | None = Field(None, alias="CONSENTBOT_ENCRYPTION_KEY", repr=False)
    policy: str | None = Field(None, alias="CONSENTBOT_POLICY")
    timezone: str = Field("Europe/London", alias="CONSENTBOT_TIMEZONE")
    host: str = Field("127.0.0.1", alias="HOST")
    port: int = Field(3000, alias="PORT")
    # How `consentbot serve` holds connections (bot/server.py), so idle, slow or huge requests cannot
    # starve it. Slack's requests are small and sent at once; it gives up on us after 3 s anyway.
    max_connections: int = Field(200, alias="CONSENTBOT_MAX_CONNECTIONS", gt=0)
    backlog: int = Field(256, alias="CONSENTBOT_BACKLOG", gt=0)
    read_timeout_seconds: float = Field(10, alias="CONSENTBOT_READ_TIMEOUT_SECONDS", gt=0, le=300)
    keep_alive_seconds: int = Field(5, alias="CONSENTBOT_KEEP_ALIVE_SECONDS", gt=0, le=300)
    max_header_bytes: int = Field(16 * 1024, alias="CONSENTBOT_MAX_HEADER_BYTES", ge=1024)
    max_body_bytes: int = Field(1024 * 1024, alias="CONSENTBOT_MAX_BODY_BYTES", ge=1024)
    log_level: str = Field("INFO", alias="CONSENTBOT_LOG_LEVEL")
    log_format: Literal["text", "json"] = Field("text", alias="CONSENTBOT_LOG_FORMAT")  # json: one object per line
    slack_signing_secret: str | None = Field(None, alias="SLACK_SIGNING_SECRET", repr=False)
    slack_bot_token: str | None = Field(None, alias="SLACK_BOT_TOKEN", repr=False)
    slack_app_token: str | None = Field(None, alias="SLACK_APP_TOKEN", repr=False)
    slack_api_url: str = Field("https://slack.com/api/", alias="SLACK_API_URL")
    # Several workspaces (a trust): each installs the app through OAuth at /slack/install instead of
    # SLACK_BOT_TOKEN (docs/slack-setup.md, "Several workspaces").
    slack_client_id: str | None = Field(None, alias="SLACK_CLIENT_ID")
    slack_client_secret: str | None = Field(None, alias="SLACK_CLIENT_SECRET", repr=False)
    slack_redirect_uri: str | None = Field(None, alias="SLACK_REDIRECT_URI")
    teams_client_id: str | None = Field(None, alias="TEAMS_CLIENT_ID")
    teams_client_secret: str | None = Field(None, alias="TEAMS_CLIENT_SECRET", repr=False)
    teams_tenant_id: str | None = Field(None, alias="TEAMS_TENANT_ID")
    teams_dsl_group_id: str | None = Field(None, alias="TEAMS_DSL_GROUP_ID")
    teams_staff_group_id: str | None = Field(None, alias="TEAMS_STAFF_GROUP_ID")
    # The app's id in the organisation's Teams catalogue (not the manifest id): Graph installs the
    # app by it for staff who have never opened a chat with the bot (docs/teams-setup.md).
    teams_catalog_app_id: str | None = Field(None, alias="TEAMS_CATALOG_APP_ID")
    # Where the Bot Connector is for someone who has never written to the bot (the SDK's own name).
    teams_service_url: str = Field("https://smba.trafficmanager.net/teams", alias="SERVICE_URL")
    teams_login_url: str = Field("https://login.microsoftonline.com", alias="TEAMS_LOGIN_URL")
    graph_api_url: str = Field("https://graph.microsoft.com/v1.0", alias="GRAPH_API_URL")
    teams_openid_metadata_url: str | None = Field(None, alias="TEAMS_OPENID_METADATA_URL")
    teams_token_issuer: str | None = Field(None, alias="TEAMS_TOKEN_ISSUER")
    # Reminders and digests (bot/scheduler.py): the sweep's interval, claim lease and batch size.
    scheduler_enabled: bool = Field(True, alias="CONSENTBOT_SCHEDULER")
    sweep_seconds: float = Field(30, alias="CONSENTBOT_SWEEP_SECONDS", gt=0)
    sweep_lease_seconds: float = Field(120, alias="CONSENTBOT_SWEEP_LEASE_SECONDS", gt=0)
    sweep_batch: int = Field(500, alias="CONSENTBOT_SWEEP_BATCH", gt=0)
    digest_time: str = Field("07:30", alias="CONSENTBOT_DIGEST_TIME")
    # On SIGTERM `serve` stops taking requests, then sends what is left in the outbox for at most this
    # long (docs/deploy.md: a container's stop grace period must be longer than twice this).
    shutdown_seconds: int = Field(10, alias="CONSENTBOT_SHUTDOWN_SECONDS", ge=0, le=300)

    def __init__(self, **values: Any) -> None:
        """Read the environment and `settings_file()`, unless `_env_file` is given (tests pass None)."""
        if "_env_file" in values:
            super().__init__(**values)
            return
        file = settings_file()
        super().__init__(_env_file=file, **values)
        if file is not None and file.is_absolute() and file.parent != Path.cwd().resolve():
            self._anchor(file.parent, given=values)

    def _anchor(self, folder: Path, *, given: dict[str, Any]) -> None:
        """Make relative paths from the named file (or the defaults) relative to its folder."""
        from_file = {name for name in ("DATABASE_URL", "CONSENTBOT_POLICY")
                     if name not in given and not any(k.upper() == name for k in os.environ)}
        fields_set = set(self.model_fields_set)
        if "DATABASE_URL" in from_file and self.database_url.startswith(SQLITE_PREFIX):
            path = self.database_url[len(SQLITE_PREFIX):]
            if path and ":memory:" not in path and not Path(path).is_absolute():
                self.database_url = SQLITE_PREFIX + str(folder / path)
        if "CONSENTBOT_POLICY" in from_file and self.policy and not Path(self.policy).expanduser().is_absolute():
            self.policy = str(folder / self.policy)
        self.__pydantic_fields_set__ = fields_set  # a default made absolute is still a default

    @property
    def database_url_is_default(self) -> bool:
        """DATABASE_URL was set nowhere (the development SQLite file)."""
        return "database_url" not in self.model_fields_set

    @property
    def is_production(self) -> bool:
        """Production refuses to start without an encryption key."""
        return self.env == "production"

    @model_validator(mode="after")
    def _one_slack_mode(self) -> Settings:
        """One workspace (SLACK_BOT_TOKEN) or several (SLACK_CLIENT_ID and SLACK_CLIENT_SECRET), never a mix."""
        oauth = [name for name, value in (("SLACK_CLIENT_ID", self.slack_client_id),
                                          ("SLACK_CLIENT_SECRET", self.slack_client_secret)) if value]
        if oauth and self.slack_bot_token:
            raise ValueError(f"Slack is set up twice: SLACK_BOT_TOKEN (one workspace) and {' and '.join(oauth)} "
                             "(several workspaces through OAuth); keep one (docs/slack-setup.md)")
        if len(oauth) == 1:
            missing = "SLACK_CLIENT_SECRET" if oauth == ["SLACK_CLIENT_ID"] else "SLACK_CLIENT_ID"
            raise ValueError(f"{oauth[0]} is set without {missing}: several Slack workspaces need both")
        if oauth and not self.slack_signing_secret:
            raise ValueError("SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are set without SLACK_SIGNING_SECRET: "
                             "several Slack workspaces need it to verify every request")
        return self

    @property
    def slack_oauth(self) -> bool:
        """Several workspaces: each installed through OAuth, tokens in the database (no SLACK_BOT_TOKEN)."""
        return bool(self.slack_client_id and self.slack_client_secret and self.slack_signing_secret
                    and not self.slack_bot_token)

    @property
    def slack_configured(self) -> bool:
        """Slack is on with a bot token and a way in: the signing secret (HTTP) or an app token (Socket
        Mode); or with several workspaces through OAuth.
        """
        return bool(self.slack_bot_token and (self.slack_signing_secret or self.slack_app_token)) or self.slack_oauth

    @property
    def teams_configured(self) -> bool:
        """Teams is on with the Entra app registration: client id, secret and tenant."""
        return bool(self.teams_client_id and self.teams_client_secret and self.teams_tenant_id)

    def delivering_platforms(self) -> frozenset[str]:
        """The chat platforms this deployment sends on. A person reachable on none of them is not alerted."""
        on = (("slack", self.slack_configured), ("teams", self.teams_configured))
        return frozenset(name for name, configured in on if configured)

    def sqlite_path(self) -> Path | None:
        """The SQLite database file, when the database is SQLite on disk."""
        if not self.database_url.startswith(SQLITE_PREFIX) or ":memory:" in self.database_url:
            return None
        return Path(self.database_url[len(SQLITE_PREFIX):])
