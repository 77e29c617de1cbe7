"""TeamsPlatform: the `bot.ports.Chat` the outbox sender delivers through, on the Teams SDK's
Bot Connector client (`microsoft_teams.api.ApiClient`).

A person is reached in their 1:1 chat with the bot. Its conversation reference (service URL and
conversation id) is kept when they first write to the bot (bot.contacts). For someone who never
has, the bot installs itself for them through Graph (409: already installed) and opens the 1:1
chat at SERVICE_URL. The reference kept for `update` is "service_url|conversation_id|activity_id".

The SDK's HTTP client raises on an error status and retries nothing itself; every retry decision
is the sender's. Teams offers a bot no way to read its chat back, so `find` cannot tell whether
a post that timed out landed (bot.ports.Chat allows None; docs/reliability.md).
An urgent alert also goes to the person's Teams activity feed (a push to their phone) through
Graph, holding only the reference; a failed push is logged and never repeated blindly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from microsoft_teams.api import Account, ApiClient
from microsoft_teams.api.activities.message.message import MessageActivityInput
from microsoft_teams.api.clients.conversation.params import CreateConversationParams
from microsoft_teams.api.models import NotificationInfo
from microsoft_teams.api.models.attachment.attachment import Attachment
from microsoft_teams.api.models.channel_data.channel_data import ChannelData
from microsoft_teams.common import Client, ClientOptions

from bot import contacts
from bot.cases import Services
from bot.messages import Kind, Message, render_text
from bot.ports import DeliveryError, Permanent, RateLimited, Transient
from handlers.teams.cards import card_attachment, render_message_card
from handlers.teams.http import retry_after

logger = logging.getLogger(__name__)
# The alerts a DSL must see on their phone at once: an urgent alert, an urgent case's decision
# (which replaces the alert when the teacher reaches the DSL step first), and no-DSL-reachable.
PUSHED = frozenset({Kind.URGENT_ALERT, Kind.DECISION_NEEDED, Kind.UNREACHABLE})
REFRESHED = (Kind.DECISION_NEEDED, Kind.URGENT_ALERT, Kind.ACTION_ASSIGNED)  # cards whose state changes later


@dataclass(frozen=True)
class Address:
    """Where a person's 1:1 chat with the bot is."""

    service_url: str
    conversation_id: str
    user_id: str = ""  # their Bot Framework id (29:...), for the card's refresh list

    def to_json(self) -> str:
        """As kept in bot.contacts."""
        return json.dumps({"service_url": self.service_url, "conversation_id": self.conversation_id,
                           "user_id": self.user_id})

    @classmethod
    def from_json(cls, text: str) -> Address:
        """From bot.contacts."""
        data = json.loads(text)
        return cls(str(data["service_url"]), str(data["conversation_id"]), str(data.get("user_id") or ""))


class TeamsPlatform:
    """Delivers outbox messages to Teams users (recipient: their Entra object id)."""

    platform = "teams"

    def __init__(self, svc: Services, *, http: httpx.AsyncClient, bot_token: Callable[[], Awaitable[str]],
                 bot_id: str, tenant_id: str, service_url: str, graph: Any = None,
                 catalog_app_id: str | None = None) -> None:
        """`graph`: a handlers.teams.graph.Directory, for installs and phone pushes (None: neither)."""
        self.svc, self.bot_id, self.tenant_id = svc, bot_id, tenant_id
        self.service_url = service_url.rstrip("/")
        self.client = Client(ClientOptions(token=bot_token), _http=http)
        self.graph, self.catalog_app_id = graph, catalog_app_id
        self._apis: dict[str, ApiClient] = {}

    def settle_after(self, code: str) -> float:
        """No wait before posting again after a post that may have landed: Teams lets a bot read
        nothing back (`find`), so waiting could only delay an urgent alert, never prevent a double.
        """
        return 0.0

    async def send(self, recipient: str, message: Message, *, key: str) -> str:
        """Post a card into the person's 1:1 chat; returns "service_url|conversation_id|activity_id"."""
        address = await self._address(recipient)
        refresh = (address.user_id,) if address.user_id and message.kind in REFRESHED else ()
        activity = MessageActivityInput(text=render_text(message)).add_attachments(
            Attachment(**card_attachment(render_message_card(message, refresh_user_ids=refresh))))
        if message.urgent:
            activity.channel_data = ChannelData(notification=NotificationInfo(alert=True))  # a toast, not just a badge
        api = self._api(address.service_url)
        sent = await _call(api.conversations.create_activity(address.conversation_id, activity))
        if message.urgent and message.kind in PUSHED and self.graph is not None:
            await self._push(recipient, message)
        return f"{address.service_url}|{address.conversation_id}|{sent.id}"

    async def update(self, ref: str, message: Message) -> None:
        """Replace a card posted earlier (every copy of "decision needed" becomes "decided by")."""
        service_url, conversation_id, activity_id = ref.split("|", 2)
        activity = MessageActivityInput(text=render_text(message)).add_attachments(
            Attachment(**card_attachment(render_message_card(message))))
        api = self._api(service_url)
        await _call(api.conversations.update_activity(conversation_id, activity_id, activity))

    async def find(self, recipient: str, key: str) -> str | None:
        """Teams lets a bot read nothing back from its chats: never known."""
        return None

    async def _push(self, recipient: str, message: Message) -> None:
        """The phone push for an urgent alert, after its card is in the chat. A 429 is waited out
        (Graph did nothing); any other failure is logged and not repeated: a 503 may have notified.
        """
        from handlers.teams.graph import URGENT_ACTIVITY, waiting_out_rate_limits

        web_url = f"https://teams.microsoft.com/l/chat/0/0?users=28:{self.bot_id}"
        try:
            await waiting_out_rate_limits(lambda: self.graph.notify(recipient, case_ref=message.case_ref,
                                                                    activity_type=URGENT_ACTIVITY, web_url=web_url))
        except DeliveryError as exc:
            logger.warning("teams phone push not sent case=%s error=%s (the card was delivered)",
                           message.case_ref, exc.code)

    def _api(self, service_url: str) -> ApiClient:
        """One SDK client per Connector address (Teams has a few regional ones)."""
        if service_url not in self._apis:
            self._apis[service_url] = ApiClient(service_url, self.client)
        return self._apis[service_url]

    async def _address(self, recipient: str) -> Address:
        """The stored 1:1 chat; else install the bot for them (Graph) and open one."""
        known = await contacts.address_of(self.svc, platform="teams", user_id=recipient)
        if known:
            return Address.from_json(known)
        if self.graph is not None and self.catalog_app_id:
            await self.graph.install_app(recipient, self.catalog_app_id)
        params = CreateConversationParams(members=[Account(id=recipient)], tenant_id=self.tenant_id,
                                          channel_data={"tenant": {"id": self.tenant_id}})
        api = self._api(self.service_url)
        made = await _call(api.conversations.create(params))
        address = Address(self.service_url, str(made.id))
        await contacts.remember_address(self.svc, platform="teams", user_id=recipient, address=address.to_json())
        return address


async def _call(request: Awaitable[Any]) -> Any:
    """Await one Connector call, translating failures into the sender's three kinds."""
    try:
        return await request
    except DeliveryError:
        raise  # a token could not be had: EntraTokens has said which kind
    except httpx.HTTPStatusError as exc:
        raise translate(exc.response) from None
    except httpx.ConnectError:
        raise Transient("teams:connect_failed") from None  # never reached Teams: safe to post again
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        raise Transient(f"teams:{type(exc).__name__}", ambiguous=True) from None


def translate(response: httpx.Response) -> DeliveryError:
    """An error answer from the Bot Connector as the sender sees it."""
    status = response.status_code
    if status == 429:
        return RateLimited(retry_after(response), "teams:rate_limited")
    if status >= 500:
        return Transient(f"teams:http_{status}", ambiguous=True)  # it may have acted before failing
    return Permanent(f"teams:http_{status}")
