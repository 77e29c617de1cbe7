"""What a chat platform must do for the bot. `handlers/` implement these; fakes in tests do too.

A platform translates errors into the three below, so the sender (bot.sender) decides about
retries without knowing any platform's wire format.
"""

from __future__ import annotations

from typing import Protocol

from bot.messages import Message


class DeliveryError(Exception):
    """A message could not be delivered. `code` is short and content-free (it is stored)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code[:120]


class RateLimited(DeliveryError):
    """The platform asked us to wait `retry_after` seconds (HTTP 429 + Retry-After)."""

    def __init__(self, retry_after: float, code: str = "rate_limited") -> None:
        super().__init__(code)
        self.retry_after = max(0.0, retry_after)


class Transient(DeliveryError):
    """Worth retrying. `ambiguous`: the platform may have acted although we saw no answer
    (a timeout or a dropped connection after the request was sent).
    """

    def __init__(self, code: str, *, ambiguous: bool = False) -> None:
        super().__init__(code)
        self.ambiguous = ambiguous


class Permanent(DeliveryError):
    """Retrying cannot help (unknown user, revoked token, message gone)."""


class Chat(Protocol):
    """A chat platform as the outbox sender sees it."""

    platform: str

    async def send(self, recipient: str, message: Message, *, key: str) -> str:
        """Post `message` to one person (their platform user id); returns a reference to
        the posted message that `update` accepts. `key` is the outbox dedupe key, attached
        to the message where the platform allows, so `find` can recognise it later.
        """
        ...

    async def update(self, ref: str, message: Message) -> None:
        """Replace the content of a message posted earlier."""
        ...

    async def find(self, recipient: str, key: str) -> str | None:
        """The reference of a message already posted under `key`, or None when there is none
        or the platform cannot tell (then a lost answer may mean a duplicate: see docs).
        """
        ...
