"""Faults to inject, each counted: in the fake Slack (an outage for some seconds, scripted stalls,
429s), in front of PostgreSQL (a relay that refuses or black-holes connections), and on a SQLite
file (its write lock held by another process).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from tests.fakes.slack_api import Body, Params
from tests.slack.test_sender import FakeSlackWithHistory

POST = "chat.postMessage"
# What the lost-post check needs (handlers/slack/platform.py reads auth.test's X-OAuth-Scopes), so
# that a `consentbot` process started against this fake turns the check on as it would on Slack.
SCOPES = "chat:write,im:history,im:write"


class FaultySlack(FakeSlackWithHistory):
    """The fake Slack (with conversations.history) plus an outage of some seconds, a pace for every
    post, and counts: `faults` (what was injected, by kind) and `in_flight` (requests being answered).
    """

    scopes = SCOPES  # what auth.test says the token may do: without im:history the lost-post check is off

    def __init__(self) -> None:
        super().__init__()
        self.faults: Counter[str] = Counter()
        self.landed: dict[str, float] = {}  # dedupe key -> when (monotonic) its first post landed
        self.in_flight = 0
        self.pace = 0.0  # seconds every post takes (not a fault: it makes a burst last long enough to kill)
        self._outage_until, self._outage_status = 0.0, 500

    def outage(self, *, seconds: float, status: int = 500) -> None:
        """Every chat.postMessage in the next `seconds` answers `status`, as Slack's edge does in an outage."""
        self._outage_until, self._outage_status = time.monotonic() + seconds, status

    def posted_keys(self) -> Counter[str]:
        """How many posts carry each outbox dedupe key (message metadata), over every DM."""
        with self._lock:
            return Counter(m["metadata"]["event_payload"]["key"] for dm in self._state.messages.values() for m in dm
                           if "metadata" in m)

    def _chat_post_message(self, params: Params) -> Body:
        posted = super()._chat_post_message(params)
        key = ((params.get("metadata") or {}).get("event_payload") or {}).get("key")
        if posted.get("ok") and key:
            self.landed.setdefault(str(key), time.monotonic())
        return posted

    async def _endpoint(self, request: Request) -> Response:
        with self._lock:
            self.in_flight += 1
        try:
            response = await super()._endpoint(request)
        finally:
            with self._lock:
                self.in_flight -= 1
        if request.path_params["method"] == "auth.test":
            response.headers["X-OAuth-Scopes"] = self.scopes
        return response

    async def _sleep_if_scripted(self, method: str) -> None:
        with self._lock:
            if self._delays.get(method):
                self.faults["stall"] += 1
        if method == POST and self.pace:
            await asyncio.sleep(self.pace)
        await super()._sleep_if_scripted(method)

    def _take_failure(self, method: str) -> Response | None:
        if method == POST and time.monotonic() < self._outage_until:
            self._count(f"http {self._outage_status}")
            return PlainTextResponse("Internal Server Error", status_code=self._outage_status)
        return self._counted(super()._take_failure(method))

    def _check_rate_limit(self, method: str) -> Response | None:
        return self._counted(super()._check_rate_limit(method))

    def _counted(self, refusal: Response | None) -> Response | None:
        if refusal is not None:
            self._count(f"http {refusal.status_code}")
        return refusal

    def _count(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1


class DatabaseGate:
    """A TCP relay on 127.0.0.1 in front of PostgreSQL: `open`, `refuse` (nothing listens and every
    live connection is reset) or `black_hole` (connections are accepted and no byte passes, until
    the gate opens again and resets them, as a firewall that dropped them would).
    """

    def __init__(self, host: str, port: int) -> None:
        self.upstream, self.port = (host, port), 0
        self.state = "closed"
        self.accepted_in_black_hole = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._epoch = 0  # a connection forwards only within the epoch it was opened in

    async def open(self) -> None:
        """Relay again; connections from before a black hole are reset (their bytes were dropped)."""
        self._cut()
        self.state = "open"
        await self._listen()

    async def refuse(self) -> None:
        """Stop listening (connecting fails at once) and reset every live connection."""
        self.state = "refused"
        self._epoch += 1
        if self._server is not None:
            self._server.close()
            self._server = None
        self._cut()

    async def black_hole(self) -> None:
        """Accept connections and forward nothing, on new and live connections alike."""
        self.state = "black-holed"
        self._epoch += 1
        await self._listen()

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop for good."""
        await self.refuse()

    def _cut(self) -> None:
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._links.add(writer)
        epoch = self._epoch
        if self.state != "open":
            self.accepted_in_black_hole += 1
            await _swallow(reader)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._links.add(up_writer)
        await asyncio.gather(self._pump(reader, up_writer, epoch), self._pump(up_reader, writer, epoch))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, epoch: int) -> None:
        try:
            while chunk := await reader.read(65536):
                if epoch == self._epoch:  # else dropped: the connection is in a black hole
                    writer.write(chunk)
                    await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()


async def _swallow(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(65536):
            pass
    except OSError:
        pass


LOCKER = ("import sqlite3, sys, time\n"
          "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
          "db.execute('BEGIN EXCLUSIVE')\n"
          "print('locked', flush=True)\n"
          "time.sleep(float(sys.argv[2]))\n"
          "db.execute('COMMIT')\n")


def lock_sqlite(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process takes the SQLite file's write lock for `seconds` (returns once it holds it)."""
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(path), str(seconds)], stdout=subprocess.PIPE,
                              text=True)
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    return locker
