"""Sign requests the way Slack signs what it sends to our app.

Slack's scheme ("v0"): HMAC-SHA256, keyed with the app's signing secret, over the
base string ``v0:{timestamp}:{raw body}``; sent as ``X-Slack-Signature: v0=<hex>``
next to ``X-Slack-Request-Timestamp``. Receivers reject timestamps more than five
minutes from now (replay protection), so the default timestamp is "now".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import quote

SIGNATURE_VERSION = "v0"


def sign(secret: str, body: bytes | str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack would attach to a request carrying exactly ``body``."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    raw = body.encode("utf-8") if isinstance(body, str) else body
    # The signature covers the raw bytes, so the caller must send `body` unchanged.
    base = f"{SIGNATURE_VERSION}:{ts}:".encode() + raw
    digest = hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": f"{SIGNATURE_VERSION}={digest}",
    }


def form_body(payload: dict[str, Any]) -> str:
    """The body Slack POSTs for interactivity (block_actions, view_submission, ...).

    Slack sends ``application/x-www-form-urlencoded`` with a single ``payload``
    field holding the JSON document, not a JSON body.
    """
    document = json.dumps(payload, separators=(",", ":"))
    return "payload=" + quote(document, safe="")
