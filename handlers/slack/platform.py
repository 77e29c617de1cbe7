"""SlackPlatform: the `bot.ports.Chat` the outbox sender delivers through.

DMs are posted to the user id (`chat.postMessage` with `channel=U...` lands in the app's
DM with them and needs only `chat:write`: https://docs.slack.dev/reference/methods/chat.postMessage).
The reference kept is "channel:ts", which `chat.update` needs.

The client used here has no retry handlers: slack_sdk's default handler retries a dropped
connection once by itself, which after a post Slack accepted would post twice. Every retry
decision is the sender's. Each post carries the outbox dedupe key in message `metadata`;
with the optional `im:history` and `im:write` scopes (detected from the token), `find` reads the DM back for
it before a post whose earlier attempt may have landed (see docs/slack-setup.md), once that
post can no longer land (`settle_after`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import workspaces
from bot.cases import Services
from bot.messages import Message
from bot.ports import Permanent, RateLimited, Transient
from bot.workspaces import Workspace
from handlers.slack.blocks import render_message

logger = logging.getLogger(__name__)
METADATA_EVENT = "consentbot_notice"
HISTORY_SCOPES = frozenset({"im:history", "im:write"})
# How long past our own timeout Slack may still act on a post it never answered. Slack documents
# no limit; the longest stall seen (issue 8) landed 60 s after the post was sent. The sender
# waits `settle` (timeout + margin) after the failed attempt ended, so with SENDER_TIMEOUT it
# looks 80 s after the post was sent.
LANDING_MARGIN = 60.0
# Slack's gateway answers these for a backend that has not answered it, and may still act.
GATEWAY_STATUSES = frozenset({"http_502", "http_504"})
TRANSIENT_CODES = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout",
                             "ratelimited", "team_added_to_org"})


class SlackPlatform:
    """Delivers outbox messages to Slack users; `verify_lost_posts` needs im:history + im:write."""

    platform = "slack"

    def __init__(self, client: AsyncWebClient, *, verify_lost_posts: bool | None = None,
                 landing_margin: float = LANDING_MARGIN) -> None:
        """`verify_lost_posts=None`: decide from the token's scopes (auth.test's X-OAuth-Scopes header)."""
        client.retry_handlers = []
        self.client, self.verify_lost_posts = client, verify_lost_posts
        self.settle = float(client.timeout) + landing_margin

    def settle_after(self, code: str) -> float:
        """Seconds after a failed call (`code`, as raised) until a post it may have made has landed.

        None to wait for when Slack itself answered (an error status or body): it has finished
        with the request. Otherwise (our timeout, a dropped connection, a gateway that gave up
        on Slack's backend) the post may still be under way: our timeout plus a margin, so
        that `find` cannot miss a stalled post that then lands beside a second one.
        """
        return _settle_after(code, self.settle)

    async def send(self, recipient: str, message: Message, *, key: str) -> str:
        """Post a DM; returns "channel:ts"."""
        text, blocks = render_message(message)
        metadata = {"event_type": METADATA_EVENT, "event_payload": {"key": key}}
        response = await _call(self.client.chat_postMessage(channel=recipient, text=text, blocks=blocks,
                                                            metadata=metadata, unfurl_links=False))
        return f"{response['channel']}:{response['ts']}"

    async def update(self, ref: str, message: Message) -> None:
        """Rewrite a DM posted earlier (every copy of "decision needed" becomes "decided by")."""
        channel, _, ts = ref.partition(":")
        text, blocks = render_message(message)
        await _call(self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks))

    async def find(self, recipient: str, key: str) -> str | None:
        """A DM already carrying `key` in its metadata, among the latest 50; None when not
        found, or when the app lacks the scopes to look (then the sender posts again).
        """
        if self.verify_lost_posts is None:
            self.verify_lost_posts = await self._has_scopes(HISTORY_SCOPES)
        if not self.verify_lost_posts:
            return None
        opened = await _call(self.client.conversations_open(users=recipient))
        channel = opened["channel"]["id"]
        history = await _call(self.client.conversations_history(channel=channel, limit=50, include_all_metadata=True))
        for item in history.get("messages") or []:
            if ((item.get("metadata") or {}).get("event_payload") or {}).get("key") == key:
                return f"{channel}:{item['ts']}"
        return None


    async def _has_scopes(self, needed: frozenset[str]) -> bool:
        response = await _call(self.client.auth_test())
        granted = {v.strip() for v in _header(response.headers, "x-oauth-scopes").split(",")}
        logger.info("slack lost-post check %s", "on" if needed <= granted else "off (no im:history and im:write)")
        return needed <= granted


def _settle_after(code: str, settle: float) -> float:
    answered = code.startswith("slack:") or (code.startswith("http_") and code not in GATEWAY_STATUSES)
    return 0.0 if answered else settle


async def _call(request: Any) -> Any:
    """Await one Web API call, translating failures into the sender's three kinds."""
    try:
        return await request
    except SlackApiError as exc:
        raise _translate(exc) from None
    except (TimeoutError, aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
        raise Transient("timeout_or_disconnect", ambiguous=True) from None
    except aiohttp.ClientConnectorError:
        raise Transient("connect_failed") from None  # never reached Slack: safe to post again
    except aiohttp.ClientError as exc:
        raise Transient(f"client_error:{type(exc).__name__}", ambiguous=True) from None


def _translate(exc: SlackApiError) -> Exception:
    status = exc.response.status_code
    error = str(exc.response.get("error") or "") if isinstance(exc.response.data, dict) else ""
    if status == 429:
        return RateLimited(_retry_after(exc.response.headers))
    if status >= 500:
        # Slack may have acted before failing: check before posting again.
        return Transient(f"http_{status}", ambiguous=True)
    if error in TRANSIENT_CODES:
        return Transient(f"slack:{error}", ambiguous=True)
    return Permanent(f"slack:{error or status}")


def _header(headers: Any, wanted: str) -> str:
    for name, value in (headers or {}).items():
        if name.lower() == wanted:
            return str(value[0] if isinstance(value, list) else value)
    return ""


def _retry_after(headers: Any) -> float:
    try:
        return float(_header(headers, "retry-after") or 1.0)
    except ValueError:
        return 1.0


class WorkspacesPlatform:
    """Several workspaces: each DM goes with the token of the workspace serving the recipient's
    school (bot.workspaces), through that workspace's own `SlackPlatform`. References are
    "INSTALLATION/channel:ts", so that an update goes with the token that posted.
    """

    platform = "slack"

    def __init__(self, svc: Services, make_client: Callable[[str], AsyncWebClient], *,
                 landing_margin: float = LANDING_MARGIN) -> None:
        """`make_client(token)` builds a client (without retry handlers) for one workspace's token."""
        self.svc, self.make_client, self.landing_margin = svc, make_client, landing_margin
        self.settle = float(make_client("").timeout) + landing_margin
        self._platforms: dict[str, SlackPlatform] = {}  # by token: a reinstall's new token gets a new client

    def _of(self, workspace: Workspace | None) -> SlackPlatform:
        if workspace is None:
            raise Permanent("slack:no_workspace_for_school")
        if workspace.bot_token not in self._platforms:
            client = self.make_client(workspace.bot_token)
            self._platforms[workspace.bot_token] = SlackPlatform(client, landing_margin=self.landing_margin)
        return self._platforms[workspace.bot_token]

    def settle_after(self, code: str) -> float:
        """As `SlackPlatform.settle_after` (every workspace's client has the same timeout)."""
        return _settle_after(code, self.settle)

    async def send(self, recipient: str, message: Message, *, key: str) -> str:
        """Post a DM with the token of the recipient's school's workspace."""
        workspace = await workspaces.of_slack_user(self.svc, slack_user_id=recipient)
        ref = await self._of(workspace).send(recipient, message, key=key)
        return f"{workspace.id}/{ref}" if workspace else ref

    async def update(self, ref: str, message: Message) -> None:
        """Rewrite a DM with the token of the workspace that posted it."""
        installation, _, inner = ref.partition("/")
        workspace = await workspaces.by_id(self.svc, int(installation)) if installation.isdigit() else None
        await self._of(workspace).update(inner, message)

    async def find(self, recipient: str, key: str) -> str | None:
        """A DM already carrying `key`, looked for in the recipient's workspace."""
        workspace = await workspaces.of_slack_user(self.svc, slack_user_id=recipient)
        found = await self._of(workspace).find(recipient, key)
        return f"{workspace.id}/{found}" if workspace and found else None
