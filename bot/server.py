"""How `consentbot serve` holds its connections: uvicorn's h11 protocol with a deadline on every
request and a cap on open connections, so that idle, dribbling or piled-up clients cannot starve
the server (issue 8, defect 4: 1,100 idle connections made /healthz time out).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)
REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
           b"connection: close\r\ncontent-length: 19\r\n\r\nService Unavailable")
LINGER_SECONDS = 1.0
RECEIVING = (h11.IDLE, h11.SEND_BODY)  # the client's side of a request that has not fully arrived


class GuardedH11Protocol(H11Protocol):
    """uvicorn's own timeout (`timeout_keep_alive`) only starts once a response is sent, and every
    byte received resets it: a connection that says nothing, or sends its headers a byte at a time,
    is never closed (https://github.com/encode/uvicorn/issues/157, "timeout-request-start" is not
    built). Here each request must arrive whole, headers and body, within `read_timeout` seconds of
    the connection opening or of its first byte; and a connection beyond uvicorn's
    `limit_concurrency` is answered 503 at once and closed within a second, unread, so that a flood
    cannot use up the process's file descriptors (uvicorn itself only answers 503 once a request
    has arrived, and keeps the connection).
    """

    read_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Refused beyond the limit, else the clock starts for the first request."""
        super().connection_made(transport)
        if self.limit_concurrency is not None and len(self.connections) > self.limit_concurrency:
            self._refuse()
            return
        self._arm()

    def _refuse(self) -> None:
        """503 and our end closed at once; the socket itself a moment later, once the client has
        read it (closing on its unread request would reset the connection and lose the 503).
        """
        logger.warning("connection refused: more than %d open connections", self.limit_concurrency)
        self._refused = True
        self.transport.write(REFUSED)
        self.transport.write_eof()
        self._deadline = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def data_received(self, data: bytes) -> None:
        """Parsed by uvicorn; the clock stops once the request has arrived whole."""
        if self._refused:
            return  # read and dropped: a refused request is never parsed
        self._arm()  # a new request on a kept-alive connection starts its own clock
        super().data_received(data)
        if self.conn.their_state not in RECEIVING:
            self._disarm()  # arrived whole (or the connection is done): the rest is the app's time

    def connection_lost(self, exc: Exception | None) -> None:
        """No clock outlives its connection."""
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        # A body that stops half way is logged by the app, which sees the disconnect.
        if self.conn.their_state is h11.IDLE:
            logger.info("connection closed: no complete request headers within %g s", self.read_timeout)
        self.transport.close()


def guarded_protocol(*, read_timeout: float) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn's `http=`: uvicorn builds one per connection from its config alone."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"read_timeout": read_timeout})
