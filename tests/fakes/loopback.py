"""An ASGI app served by uvicorn on 127.0.0.1 in a background thread: the shared lifecycle of the
fakes (Slack, the Teams Bot Connector and Entra, Graph), so tests talk to them over real HTTP.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol, Self, TypeVar

import uvicorn


class Recorded(Protocol):
    """An HTTP call a fake recorded (read-only: the fakes record frozen dataclasses)."""

    @property
    def path(self) -> str: ...

    @property
    def method(self) -> str: ...


C = TypeVar("C", bound=Recorded)


def matching(calls: Iterable[C], path_regex: str, method: str | None = None) -> list[C]:
    """The recorded calls whose path matches (re.search), optionally of one method."""
    pattern = re.compile(path_regex)
    return [c for c in calls if pattern.search(c.path) and method in (None, c.method)]


class LoopbackServer:
    """Serves one app on a free loopback port; `stopping` is set while it shuts down, so a fake's
    scripted stalls can end early.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.stopping = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def serve(self, app: Any) -> int:
        """Bind 127.0.0.1 on a free port, start serving `app`, block until it accepts; returns the port."""
        # Binding the socket ourselves gives a free port with no race against other tests.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        # Backstop only: stopping also cuts scripted delays short.
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
        self._socket, self._server = sock, uvicorn.Server(config)
        self.stopping.clear()
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name=self.name,
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} server failed to start")
            time.sleep(0.005)
        return int(sock.getsockname()[1])

    def shutdown(self) -> None:
        """Stop serving and join the thread; safe to call twice."""
        if self._server is None or self._thread is None:
            return
        self.stopping.set()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None


class LoopbackFake:
    """What every fake shares: start (serving `_app()`), stop, and use in a `with` block."""

    _loop: LoopbackServer

    def _app(self) -> Any:
        """The fake's ASGI app."""
        raise NotImplementedError

    def _serving(self, port: int) -> None:
        """Note the addresses once the port is known."""
        raise NotImplementedError

    def start(self) -> Self:
        """Serve on a free loopback port; block until the server accepts requests."""
        self._serving(self._loop.serve(self._app()))
        return self

    def stop(self) -> None:
        """Shut the server down (cutting scripted stalls short) and join its thread; safe to call twice."""
        self._loop.shutdown()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
