"""Outbound HTTPS to Microsoft honours a school's proxy and CA bundle settings."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import httpx
import pytest

from handlers.teams.http import outbound_client, tls_context

CA = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")


async def test_the_proxy_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.school.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    client = outbound_client(timeout=5)
    try:
        routes = {str(pattern.pattern): transport for pattern, transport in client._mounts.items()}
        assert any(p.startswith("https://") and t is not None for p, t in routes.items()), routes
        proxied = [t for p, t in routes.items() if p.startswith("https://") and t is not None]
        assert all(isinstance(t, httpx.AsyncHTTPTransport) for t in proxied)
    finally:
        await client.aclose()


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_a_ca_bundle_is_read_from_either_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 variable: str) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    missing = tmp_path / "school-root.pem"
    monkeypatch.setenv(variable, str(missing))
    with pytest.raises(FileNotFoundError):  # proves the named file is the one read
        tls_context()
    if CA.exists():
        monkeypatch.setenv(variable, str(CA))
        assert tls_context().cert_store_stats()["x509_ca"] > 0


def test_a_requests_ca_bundle_reaches_the_teams_sdk_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers.teams.http import share_ca_bundle

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/school/root.pem")
    share_ca_bundle()
    assert os.environ["SSL_CERT_FILE"] == "/etc/school/root.pem"
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/other.pem")
    share_ca_bundle()
    assert os.environ["SSL_CERT_FILE"] == "/etc/other.pem"  # an explicit setting wins
