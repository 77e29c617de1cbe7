"""Errors the use cases raise. Messages name case references and steps, never content."""

from __future__ import annotations

from typing import Any


class BotError(Exception):
    """Base of every refusal a user may see."""


class NotAuthorised(BotError, PermissionError):
    """The person may not do this. `audit` holds the ids the access log records of the refusal."""

    def __init__(self, message: str, *, audit: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.audit = audit


class NotFound(BotError, LookupError):
    """No such case or person (or not one this person may know about)."""


class Conflict(BotError):
    """The case changed since it was read: someone else answered first."""


class InvalidAnswer(BotError, ValueError):
    """The answer does not fit the step (wraps checklist.IllegalAnswer)."""

    def __init__(self, message: str, *, step: str, field: str | None = None) -> None:
        super().__init__(message)
        self.step, self.field = step, field
