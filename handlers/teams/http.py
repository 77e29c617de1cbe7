"""Outbound HTTPS to Microsoft (Entra ID, the Bot Connector, Graph), as school networks need it.

httpx reads HTTPS_PROXY, ALL_PROXY and NO_PROXY itself (trust_env). A school that inspects TLS
gives its own root certificate in SSL_CERT_FILE, or REQUESTS_CA_BUNDLE as the requests-based
tools (msal, azure-identity) read it: both are honoured here, so one setting serves every tool.
"""

from __future__ import annotations

import os
import ssl
import time
from dataclasses import dataclass

import httpx

from bot.ports import Permanent, RateLimited, Transient


def tls_context() -> ssl.SSLContext:
    """The system's trust store, or the bundle SSL_CERT_FILE / REQUESTS_CA_BUNDLE names."""
    bundle = os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE")
    return ssl.create_default_context(cafile=bundle) if bundle else ssl.create_default_context()


def share_ca_bundle() -> None:
    """The Teams SDK makes its own httpx clients, which read SSL_CERT_FILE only: give them the
    bundle a school set as REQUESTS_CA_BUNDLE too.
    """
    bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    if bundle and not os.environ.get("SSL_CERT_FILE"):
        os.environ["SSL_CERT_FILE"] = bundle


def outbound_client(*, timeout: float) -> httpx.AsyncClient:
    """An HTTP client honouring the proxy and CA settings, with no retries of its own: every retry
    decision is the outbox sender's (a repeated POST could notify someone twice).
    """
    # No `transport=`: httpx reads the proxy variables only for the transports it makes itself
    # (and those retry nothing).
    return httpx.AsyncClient(timeout=timeout, trust_env=True, verify=tls_context())


def retry_after(response: httpx.Response, default: float = 1.0) -> float:
    """Seconds from a Retry-After header (Microsoft sends whole seconds)."""
    try:
        return max(0.0, float(response.headers.get("retry-after", default)))
    except ValueError:
        return default


@dataclass
class _Cached:
    value: str
    expires: float


class EntraTokens:
    """App-only tokens (OAuth client credentials) from Entra ID, cached until a minute before expiry.

    Written here rather than through msal: msal first asks login.microsoftonline.com which
    authorities exist (instance discovery), which a test issuer on loopback cannot answer, and
    it would be one more client whose retries and proxy handling differ from the others.
    """

    def __init__(self, http: httpx.AsyncClient, *, login_url: str, tenant_id: str, client_id: str,
                 client_secret: str) -> None:
        self.http, self.client_id, self.client_secret = http, client_id, client_secret
        self.url = f"{login_url.rstrip('/')}/{tenant_id}/oauth2/v2.0/token"
        self._cache: dict[str, _Cached] = {}

    async def token(self, scope: str) -> str:
        """A bearer token for `scope` (e.g. https://graph.microsoft.com/.default)."""
        cached = self._cache.get(scope)
        if cached and cached.expires > time.monotonic():
            return cached.value
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.client_secret, "scope": scope}
        try:
            response = await self.http.post(self.url, data=form)
        except httpx.TimeoutException:
            raise Transient("entra:timeout") from None  # asking for a token changes nothing: safe to repeat
        except httpx.TransportError as exc:
            raise Transient(f"entra:{type(exc).__name__}") from None
        if response.status_code == 429:
            raise RateLimited(retry_after(response), "entra:rate_limited")
        if response.status_code >= 500:
            raise Transient(f"entra:http_{response.status_code}")
        if response.status_code != 200:
            raise Permanent(f"entra:{_error_code(response)}")  # wrong secret or tenant: a person must fix it
        body = response.json()
        lifetime = float(body.get("expires_in", 3600))
        self._cache[scope] = _Cached(str(body["access_token"]), time.monotonic() + max(0.0, lifetime - 60))
        return self._cache[scope].value


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error") or response.status_code)[:60]
    except ValueError:
        return str(response.status_code)
