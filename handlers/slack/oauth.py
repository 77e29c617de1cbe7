"""Several workspaces: Bolt's own OAuth flow, with the installations in our database.

GET /slack/install and GET /slack/oauth_redirect are Bolt's
(https://docs.slack.dev/tools/bolt-python/concepts/authenticating-oauth); the installation store
keeps tokens in the project's database (bot/workspaces.py), and a guard keeps each workspace to its
own school.

Bolt's state check stays on: the state is issued signed and short-lived, bound to the browser by
Bolt's cookie, and accepted once (its nonce is claimed in the database, so a replay fails on any
replica). A workspace installed through the flow serves nobody until an administrator links it to
a school (`consentbot slack link TEAM_ID --school SLUG`): whoever installs the app cannot choose
whose messages it carries.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncFailureArgs, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient

from bot import cases, workspaces
from bot.cases import Services
from bot.config import Settings
from bot.workspaces import Workspace

logger = logging.getLogger(__name__)
# The bot scopes of slack/manifest.yml (the optional im:history is asked for too: it closes the
# duplicate-DM gap, docs/slack-setup.md).
SCOPES = ("commands", "chat:write", "files:write", "im:write", "im:history")
STATE_SECONDS = 600  # Bolt's default: the install must finish within ten minutes
UNINSTALL_EVENTS = frozenset({"app_uninstalled", "tokens_revoked"})
NOT_LINKED = "This Slack workspace is not linked to a school yet. Ask your administrator (docs/slack-setup.md)."
NOT_HERE = "You are not registered with consentbot in this Slack workspace. Ask your DSL or administrator."


class DatabaseInstallationStore(AsyncInstallationStore):
    """Bolt's installation store over the `slack_installations` table (bot only: no user tokens)."""

    def __init__(self, svc: Services) -> None:
        """Installations are read and written through `svc` (its database and key ring)."""
        self.svc = svc

    @property
    def logger(self) -> logging.Logger:
        """The store's logger (ids only)."""
        return logger

    async def async_save(self, installation: Installation) -> None:
        """Record a new or repeated installation."""
        await self.async_save_bot(installation.to_bot())

    async def async_save_bot(self, bot: Bot) -> None:
        """Record the bot token of an installation."""
        await workspaces.save(self.svc, workspace=Workspace(
            team_id=bot.team_id or "", enterprise_id=bot.enterprise_id or "", team_name=bot.team_name or "",
            app_id=bot.app_id or "", is_enterprise_install=bool(bot.is_enterprise_install), bot_token=bot.bot_token,
            bot_id=bot.bot_id or "", bot_user_id=bot.bot_user_id or "", bot_scopes=",".join(bot.bot_scopes or []),
            installed_at=datetime.fromtimestamp(bot.installed_at, UTC)))

    async def async_find_bot(self, *, enterprise_id: str | None, team_id: str | None,
                             is_enterprise_install: bool | None = False) -> Bot | None:
        """The bot of the workspace a request came from (Bolt's authorization asks)."""
        found = await workspaces.find(self.svc, enterprise_id=enterprise_id, team_id=team_id)
        return None if found is None else to_bot(found)

    async def async_find_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                      user_id: str | None = None,
                                      is_enterprise_install: bool | None = False) -> Installation | None:
        """The installation as Bolt's Installation (bot fields only: the app asks for no user token)."""
        found = await workspaces.find(self.svc, enterprise_id=enterprise_id, team_id=team_id)
        if found is None:
            return None
        return Installation(app_id=found.app_id, enterprise_id=found.enterprise_id or None,
                            team_id=found.team_id or None, team_name=found.team_name, bot_token=found.bot_token,
                            bot_id=found.bot_id, bot_user_id=found.bot_user_id, bot_scopes=found.bot_scopes,
                            user_id=user_id or "", is_enterprise_install=found.is_enterprise_install,
                            installed_at=found.installed_at.timestamp())

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        """Forget the workspace's token (tokens_revoked, app_uninstalled)."""
        await workspaces.remove(self.svc, enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                        user_id: str | None = None) -> None:
        """As `async_delete_bot`: only bot installations are kept."""
        if user_id is None:
            await workspaces.remove(self.svc, enterprise_id=enterprise_id, team_id=team_id)


def to_bot(found: Workspace) -> Bot:
    """Bolt's Bot for one of our workspaces."""
    return Bot(app_id=found.app_id, enterprise_id=found.enterprise_id or None, team_id=found.team_id or None,
               team_name=found.team_name, bot_token=found.bot_token, bot_id=found.bot_id,
               bot_user_id=found.bot_user_id, bot_scopes=found.bot_scopes,
               is_enterprise_install=found.is_enterprise_install, installed_at=found.installed_at.timestamp())


class SignedStateStore(AsyncOAuthStateStore):
    """OAuth states that need no table: NONCE.EXPIRY.MAC, signed with a key derived from the key ring,
    and accepted once (the nonce is claimed as a processed delivery).
    """

    def __init__(self, svc: Services, *, seconds: int = STATE_SECONDS) -> None:
        """States are signed with `svc`'s key ring and live `seconds`."""
        self.svc, self.seconds = svc, seconds

    @property
    def logger(self) -> logging.Logger:
        """The store's logger (reasons only, never a state)."""
        return logger

    def _mac(self, text: str) -> str:
        key = self.svc.keyring.derived("slack-oauth-state")
        return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        """A new state for one install attempt."""
        text = f"{secrets.token_urlsafe(16)}.{int(time.time()) + self.seconds}"
        return f"{text}.{self._mac(text)}"

    async def async_consume(self, state: str) -> bool:
        """True once for a state this deployment issued that has not expired."""
        nonce, _, rest = state.partition(".")
        expiry, _, mac = rest.partition(".")
        if not (nonce and expiry.isdigit() and hmac.compare_digest(mac, self._mac(f"{nonce}.{expiry}"))):
            logger.warning("slack oauth state refused reason=signature")
            return False
        if int(expiry) < time.time():
            logger.warning("slack oauth state refused reason=expired")
            return False
        if not await cases.claim_delivery(self.svc, key=f"slack:oauth-state:{nonce}"[:200]):
            logger.warning("slack oauth state refused reason=used")
            return False
        return True


async def _installed(args: AsyncSuccessArgs) -> BoltResponse:
    logger.info("slack oauth install completed team=%s", args.installation.team_id or args.installation.enterprise_id)
    return await args.default.success(args)


async def _refused(args: AsyncFailureArgs) -> BoltResponse:
    logger.warning("slack oauth install failed reason=%s", args.reason)  # a reason code: never the code or state
    return await args.default.failure(args)


def oauth_flow(settings: Settings, svc: Services, client: AsyncWebClient, flow_logger: logging.Logger) -> AsyncOAuthFlow:
    """Bolt's OAuth flow over our stores. Its logger stops at ERROR: Bolt's own warning on a failed
    exchange quotes the authorisation code (the failure is logged above by its reason instead).
    """
    assert settings.slack_client_id and settings.slack_client_secret  # noqa: S101 - settings.slack_oauth checked
    oauth = AsyncOAuthSettings(
        client_id=settings.slack_client_id, client_secret=settings.slack_client_secret, scopes=list(SCOPES),
        redirect_uri=settings.slack_redirect_uri, installation_store=DatabaseInstallationStore(svc),
        installation_store_bot_only=True, state_store=SignedStateStore(svc), state_expiration_seconds=STATE_SECONDS,
        callback_options=AsyncCallbackOptions(success=_installed, failure=_refused), logger=flow_logger)
    # Bolt checks each request's token with auth.test, a round trip to Slack inside its 3 seconds:
    # once per token is enough (a revoked token still fails every call it makes, and is forgotten).
    oauth.authorize = AsyncInstallationStoreAuthorize(
        logger=flow_logger, client_id=oauth.client_id, client_secret=oauth.client_secret,
        installation_store=oauth.installation_store, bot_only=True, cache_enabled=True)
    return AsyncOAuthFlow(client=client, logger=flow_logger, settings=oauth)


def workspace_guard(svc: Services) -> Any:
    """Bolt middleware: a request goes on only for the workspace's own school (bot.workspaces.admits).
    Bolt has already refused a workspace that never installed the app.
    """

    async def middleware(req: Any, next: Any) -> BoltResponse | None:  # noqa: A002 - Bolt injects by name
        context = req.context
        if (req.body.get("event") or {}).get("type") in UNINSTALL_EVENTS:
            await next()  # Bolt's own listeners forget the workspace's token, linked or not
            return None
        found = await workspaces.find(svc, enterprise_id=context.enterprise_id, team_id=context.team_id)
        if found is not None and await workspaces.admits(svc, workspace=found, slack_user_id=context.user_id):
            await next()
            return None
        reason = "not_linked" if found is None or found.school_id is None else "other_school"
        logger.warning("slack request refused reason=%s team=%s", reason, context.team_id or context.enterprise_id)
        text = NOT_LINKED if reason == "not_linked" else NOT_HERE
        return BoltResponse(status=200, body=text if req.body.get("command") else "")

    return middleware
