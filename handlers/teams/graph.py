"""Microsoft Graph through msgraph-sdk: the directory (group members), proactive app installs, and
activity-feed notifications (the phone push that reaches a DSL who is not looking at Teams).

Every failure leaves here as a bot.ports error, so callers decide about repeats without knowing
Graph's wire format. Nothing here repeats a request by itself except `waiting_out_rate_limits`,
and that only after a 429, when Graph did not act: a repeated sendActivityNotification would
notify someone twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from kiota_abstractions.api_error import APIError
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_http.middleware import (
    HeadersInspectionHandler,
    ParametersNameDecodingHandler,
    RedirectHandler,
    UrlReplaceHandler,
)
from kiota_http.middleware.user_agent_handler import UserAgentHandler
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.groups.item.transitive_members.transitive_members_request_builder import (
    TransitiveMembersRequestBuilder,
)
from msgraph.generated.models.directory_object_collection_response import DirectoryObjectCollectionResponse
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.key_value_pair import KeyValuePair
from msgraph.generated.models.teamwork_activity_topic import TeamworkActivityTopic
from msgraph.generated.models.teamwork_activity_topic_source import TeamworkActivityTopicSource
from msgraph.generated.models.user import User
from msgraph.generated.models.user_scope_teams_app_installation import UserScopeTeamsAppInstallation
from msgraph.generated.users.item.teamwork.send_activity_notification.send_activity_notification_post_request_body import (  # noqa: E501
    SendActivityNotificationPostRequestBody,
)
from msgraph_core import GraphClientFactory
from msgraph_core.middleware import GraphTelemetryHandler

from bot.directory import DirectoryPerson
from bot.ports import DeliveryError, Permanent, RateLimited, Transient
from handlers.teams.http import outbound_client

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Activity types the app manifest declares (activities.activityTypes), with their templateText:
URGENT_ACTIVITY = "urgentConcern"  # "Urgent safeguarding concern {caseRef}: open it in Teams"
DECISION_ACTIVITY = "decisionNeeded"  # "Concern {caseRef} needs your decision"
MEMBER_FIELDS = ["id", "displayName", "mail", "userPrincipalName", "accountEnabled"]
MAX_PAGES = 10_000  # a nextLink that never ends must not loop for ever
_CODE_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


class _Tokens(AccessTokenProvider):
    """Bearer tokens from `token()`, given only to the host of the Graph base URL: an absolute
    link in a response (@odata.nextLink) pointing anywhere else is sent without one.
    """

    def __init__(self, token: Callable[[], Awaitable[str]], host: str) -> None:
        self._token, self._hosts = token, AllowedHostsValidator([host] if host else [])

    async def get_authorization_token(self, uri: str, additional_authentication_context: dict[str, Any] | None = None
                                      ) -> str:
        """A token for `uri`, or "" (no Authorization header) for a host other than Graph's."""
        return await self._token() if self._hosts.is_url_host_valid(uri) else ""

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        """The Graph base URL's host only."""
        return self._hosts


def build_graph_client(base_url: str, token: Callable[[], Awaitable[str]], *, timeout: float = 10) -> GraphServiceClient:
    """A Graph client at `base_url` (e.g. https://graph.microsoft.com/v1.0) authenticating with `token()`.

    Its HTTP client comes from outbound_client (proxies, CA bundles) with Graph's middleware minus
    kiota's RetryHandler, which repeats a request after a 429, 503 or 504 by itself, POSTs
    included (kiota_http/middleware/retry_handler.py): every repeat is decided by the caller.
    """
    base = base_url.rstrip("/")
    http = outbound_client(timeout=timeout)
    http.base_url = httpx.URL(base)
    # msgraph_core's default list, in its order, without RetryHandler (graph_client_factory.py).
    middleware = [RedirectHandler(), ParametersNameDecodingHandler(), UrlReplaceHandler(), UserAgentHandler(),
                  HeadersInspectionHandler(), GraphTelemetryHandler()]
    GraphClientFactory.create_with_custom_middleware(middleware, client=http)
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(_Tokens(token, urlsplit(base).hostname or "")),
                                  client=http)
    adapter.base_url = base
    return GraphServiceClient(request_adapter=adapter)


class Directory:
    """The calls consentbot makes to Graph. Each raises RateLimited, Transient or Permanent."""

    def __init__(self, client: GraphServiceClient) -> None:
        self.client = client
        self.base_url = client.request_adapter.base_url.rstrip("/")

    async def aclose(self) -> None:
        """Close the HTTP client's connections."""
        http = getattr(self.client.request_adapter, "_http_client", None)
        if isinstance(http, httpx.AsyncClient):
            await http.aclose()

    async def transitive_members(self, group_id: str) -> list[DirectoryPerson]:
        """The users in a group and its nested groups (groups and devices skipped; disabled
        accounts skipped, since they cannot sign in), following @odata.nextLink pages.
        """
        builder = self.client.groups.by_group_id(group_id).transitive_members
        query = TransitiveMembersRequestBuilder.TransitiveMembersRequestBuilderGetQueryParameters(select=MEMBER_FIELDS)
        page = await _translating("members", lambda: builder.get(RequestConfiguration(query_parameters=query)))
        people, pages = _people(page), 1
        while page is not None and page.odata_next_link and pages < MAX_PAGES:
            following = builder.with_url(page.odata_next_link)
            page = await _translating("members", following.get)
            people, pages = people + _people(page), pages + 1
        logger.info("graph members group=%s people=%d pages=%d", group_id, len(people), pages)
        return people

    async def install_app(self, user_id: str, catalog_app_id: str) -> None:
        """Install the app for one person, so the bot can message someone who never opened it.
        Already installed (409 Conflict) is success.
        """
        bind = f"{self.base_url}/appCatalogs/teamsApps/{catalog_app_id}"
        body = UserScopeTeamsAppInstallation(additional_data={"teamsApp@odata.bind": bind})
        installed = self.client.users.by_user_id(user_id).teamwork.installed_apps
        already = await _translating("install", lambda: installed.post(body), tolerate=409)
        logger.info("graph install user=%s %s", user_id, "already installed" if already else "installed")

    async def notify(self, user_id: str, *, case_ref: str, activity_type: str, web_url: str) -> None:
        """Send an activity-feed notification (a push to the phone). It carries the case reference
        only: a lock screen is no place for a child's details.
        """
        body = SendActivityNotificationPostRequestBody(
            topic=TeamworkActivityTopic(source=TeamworkActivityTopicSource.Text, value=f"Concern {case_ref}",
                                        web_url=web_url),
            activity_type=activity_type,
            preview_text=ItemBody(content=f"Concern {case_ref} needs you"),
            template_parameters=[KeyValuePair(name="caseRef", value=case_ref)])
        send = self.client.users.by_user_id(user_id).teamwork.send_activity_notification
        await _translating("notify", lambda: send.post(body))
        logger.info("graph notify user=%s activity=%s case=%s", user_id, activity_type, case_ref)


def _people(page: DirectoryObjectCollectionResponse | None) -> list[DirectoryPerson]:
    users = [u for u in (page.value or [] if page else []) if isinstance(u, User) and u.id]
    return [DirectoryPerson(id=u.id or "", name=u.display_name or "", upn=u.user_principal_name or "",
                            email=(u.mail or u.user_principal_name or "").strip().lower())
            for u in users if u.account_enabled is not False]  # None: not readable with this permission


async def _translating(op: str, call: Callable[[], Awaitable[T]], *, tolerate: int | None = None) -> T | None:
    """Run one Graph call, its failures as bot.ports errors. A `tolerate` status is success
    (then None is returned).
    """
    try:
        return await call()
    except APIError as exc:
        if tolerate is not None and exc.response_status_code == tolerate:
            return None
        error: DeliveryError = _from_status(exc.response_status_code or 0, exc.response_headers, _odata_code(exc))
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        # Nothing was sent: Graph cannot have acted.
        error = Transient(f"graph:{type(exc).__name__}", ambiguous=False)
    except httpx.TimeoutException:
        error = Transient("graph:timeout", ambiguous=True)  # sent, no answer: it may have happened
    except httpx.TransportError as exc:  # a dropped connection, after the request went
        error = Transient(f"graph:{type(exc).__name__}", ambiguous=True)
    logger.warning("graph %s failed: %s", op, error.code)
    raise error


def _from_status(status: int, headers: Mapping[str, str] | None, code: str) -> DeliveryError:
    if status == 429:
        return RateLimited(_retry_after(headers), "graph:429")
    if status >= 500:
        return Transient(f"graph:{status}", ambiguous=True)  # a POST may have been carried out
    return Permanent(f"graph:{status}:{code}" if code else f"graph:{status}")


def _retry_after(headers: Mapping[str, str] | None, default: float = 1.0) -> float:
    """Seconds from Retry-After (Graph sends whole seconds)."""
    try:
        return max(0.0, float((headers or {}).get("retry-after", default)))
    except ValueError:
        return default


def _odata_code(exc: APIError) -> str:
    """The OData error code (e.g. Request_ResourceNotFound), never the message: codes are stored."""
    code = getattr(getattr(exc, "error", None), "code", None) or ""
    return _CODE_CHARS.sub("", str(code))[:60]


async def waiting_out_rate_limits(call: Callable[[], Awaitable[T]], *, attempts: int = 4, max_wait: float = 60) -> T:
    """Await `call()`, repeating it only after RateLimited (a 429: Graph did not act), sleeping
    Retry-After, at most `attempts` calls and `max_wait` seconds of waiting in all. Any other
    failure is raised at once: after a 503 or a timeout a notification may have gone out.
    """
    waited = 0.0
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except RateLimited as exc:
            if attempt == attempts or waited + exc.retry_after > max_wait:
                raise
            logger.info("graph rate limited: waiting %.1f s (attempt %d of %d)", exc.retry_after, attempt, attempts)
            await asyncio.sleep(exc.retry_after)
            waited += exc.retry_after
    raise AssertionError("unreachable")
