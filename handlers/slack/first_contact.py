"""First contact: a Slack user the bot does not know by member id, but who is registered by the
email address of their Slack profile, is linked to that registration before their request is
handled, so they go on (raise a concern) in the same interaction and nobody copies ids.

Reading a profile's email needs the optional `users:read` and `users:read.email` scopes
(docs/slack-setup.md). Without them the person is told to ask for `consentbot staff edit
--slack-id`. The email comes from Slack, never from what a user typed; people.py links and logs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import contacts, people, workspaces
from bot.cases import Services
from handlers.slack.parse import user_id

logger = logging.getLogger(__name__)
NOT_LINKED = "consentbot_not_linked"  # the context key a listener reads the note from
KNOWN = "consentbot_person"  # the context key holding the registered person acting, when known
SCOPE_NOTE = ("You are not linked to consentbot yet, and it may not read your Slack email address to find your "
              "registration. Ask your DSL or administrator to link you: consentbot staff edit YOUR-EMAIL "
              "--slack-id {user_id}")


def register(app: AsyncApp, svc: Services) -> None:
    """Link unknown users by their Slack email before any listener runs."""
    app.use(link_on_first_contact(svc))


def acting_user(body: dict[str, Any]) -> str:
    """Who acts: a command's or interaction's user, or whoever opened the Home tab; "" for other events."""
    event = body.get("event")
    if isinstance(event, dict):
        return str(event.get("user") or "") if event.get("type") == "app_home_opened" else ""
    return user_id(body)


def link_on_first_contact(svc: Services) -> Any:
    """Bolt middleware: an unknown user is looked up (users.info) and linked when their email is
    registered to an active person with no Slack id; when the email cannot be read, the note for
    them is left in the context under NOT_LINKED.
    """
    recent = RecentLookups()

    async def middleware(body: dict[str, Any], client: AsyncWebClient, context: Any, next: Any) -> None:  # noqa: A002
        who = acting_user(body)
        # Only a well-formed member id is looked up (a malformed payload's is not Slack's to answer).
        # A submitted form is not: its sender opened it, so was linked then, and the step's own
        # transaction identifies them (one transaction per answer).
        if people.SLACK_USER_ID.fullmatch(who) and body.get("type") != "view_submission":
            known = await contacts.known(svc, platform="slack", user_id=who)
            if known is not None:
                context[KNOWN] = known  # the listener need not look them up again
            elif note := await recent.note_for(
                    who, await contacts.linkable(svc, platform="slack"),
                    lambda: link(svc, client, who, team_id=_text(context.get("team_id")),
                                 enterprise_id=_text(context.get("enterprise_id")))):
                context[NOT_LINKED] = note
        await next()

    return middleware


class RecentLookups:
    """Who was looked up in Slack lately without being linked, and what they were told: someone
    unregistered who clicks again is not looked up again (one users.info per person per
    LOOK_AGAIN_SECONDS, however often they click), yet is linked within that time of being added.
    Member ids only, never an email; at most MAX people, the oldest forgotten first.
    """

    LOOK_AGAIN_SECONDS, MAX = 300.0, 10_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.looked: dict[str, tuple[float, Hashable, str | None]] = {}

    async def note_for(self, who: str, linkable: Hashable, look: Callable[[], Awaitable[str | None]]) -> str | None:
        """The note for `who`: from a look made within LOOK_AGAIN_SECONDS while the people who could
        be linked (`linkable`, from contacts.linkable) were the same, else from a new `look()`: a
        person added for them is found at their next click.
        """
        now = self.clock()
        seen = self.looked.get(who)
        if seen is not None and now - seen[0] < self.LOOK_AGAIN_SECONDS and seen[1] == linkable:
            return seen[2]
        note = await look()
        self.looked.pop(who, None)
        self.looked[who] = (now, linkable, note)
        while len(self.looked) > self.MAX:
            self.looked.pop(next(iter(self.looked)))
        return note


def _text(value: Any) -> str | None:
    """A workspace id as Bolt read it from the payload: a string, or nothing (a malformed one)."""
    return value if isinstance(value, str) else None


async def link(svc: Services, client: AsyncWebClient, who: str, *, team_id: str | None = None,
               enterprise_id: str | None = None) -> str | None:
    """Link `who` by their profile email; the note to show them when it cannot be read, else None.
    With several workspaces (OAuth) only someone of the school the workspace serves is linked: the
    admins of one workspace vouch for emails in it, not for another school's people.
    """
    served = await workspaces.find(svc, enterprise_id=enterprise_id, team_id=team_id)
    if served is not None and served.school_id is None:
        return None  # a workspace not linked to a school yet links nobody
    try:
        found = await client.users_info(user=who)
    except SlackApiError as exc:
        code = exc.response.get("error") if isinstance(exc.response.data, dict) else exc.response.status_code
        logger.warning("slack users.info failed on first contact error=%s", code)
        return SCOPE_NOTE.format(user_id=who) if code == "missing_scope" else None
    user = found.get("user") or {}
    if user.get("is_bot") or user.get("deleted"):
        return None
    email = str((user.get("profile") or {}).get("email") or "")
    if not email:  # without users:read.email, Slack leaves the email out of the profile
        logger.info("slack profile without an email on first contact (users:read.email not granted?)")
        return SCOPE_NOTE.format(user_id=who)
    person = await people.link_on_first_contact(svc, platform="slack", user_id=who, email=email,
                                                school_id=served.school_id if served else None)
    if person is not None:
        logger.info("slack user linked by profile email staff_id=%s", person.id)
    return None
