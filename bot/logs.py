"""Log lines: plain text (the default) or JSON (`CONSENTBOT_LOG_FORMAT=json`), each with the id of
the HTTP request it belongs to. Lines carry ids, references and codes only, never content: the
JSON form adds structure, not data (an exception is its type and its message, which by the
bot's rule names references only; no traceback, whose source lines could quote anything).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from contextvars import ContextVar
from datetime import UTC, datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s%(in_request)s"
REQUEST_ID = ContextVar("request_id", default="-")
HEADER = "x-request-id"
GIVEN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # a proxy's id is kept only if it is plainly an id


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keep the record; add `request_id` (and, for text, ` request=...` when in a request)."""
        request_id = REQUEST_ID.get()
        record.request_id = request_id
        record.in_request = f" request={request_id}" if request_id != "-" else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request id; an error's type."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        line = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "message": record.getMessage(),
                "request_id": getattr(record, "request_id", REQUEST_ID.get())}
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
            line["error_message"] = str(record.exc_info[1])[:200]
        return json.dumps(line, ensure_ascii=False)


def handler(log_format: str) -> logging.Handler:
    """A stderr handler in the chosen format, with request ids."""
    out = logging.StreamHandler()
    out.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    out.addFilter(RequestIdFilter())
    return out


class RequestIds:
    """ASGI middleware: each HTTP request gets an id (a sane `X-Request-Id` from a proxy is kept),
    set for its log lines and returned in the response's `X-Request-Id` header.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request under its id."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(HEADER.encode(), b"").decode("latin-1")
        request_id = given if GIVEN_ID.fullmatch(given) else secrets.token_hex(8)
        token = REQUEST_ID.set(request_id)

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (HEADER.encode(), request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        finally:
            REQUEST_ID.reset(token)
