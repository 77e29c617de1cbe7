"""Errors the use cases raise. Messages name case references and steps, never content."""

from __future__ import annotations

from typing import Any


class BotError(Exception):
    """Base of every refusal a user may see. `audit`, when set, is what the access log records
    of the attempt (ids and codes: actor_id, school_id, case_id, detail) under `action`.
    """

    action = "refused"

    def __init__(self, message: str, *, audit: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.audit = audit


class NotAuthorised(BotError, PermissionError):
    """The person may not do this."""


class NotFound(BotError, LookupError):
    """No such case or person (or not one this person may know about)."""

    action = "refused_not_found"


class Conflict(BotError):
    """The case changed since it was read: someone else answered first, or it is closed."""

    action = "stale_answer"


class InvalidAnswer(BotError, ValueError):
    """The answer does not fit the step (wraps checklist.IllegalAnswer)."""

    def __init__(self, message: str, *, step: str, field: str | None = None) -> None:
        super().__init__(message)
        self.step, self.field = step, field
