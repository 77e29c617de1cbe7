"""The terminal front end (`consentbot chat`): reads answers line by line, so it can be
scripted through a pipe, and prints every notification an action queues.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from bot import cases, chronology, outbox, screens, views
from bot.cases import CaseView, Person, Services
from bot.errors import InvalidAnswer
from bot.policy.model import FieldType
from bot.readable import local_label
from bot.record_text import NOT_RECORDED, sections
from bot.screens import Question, Screen

NEW = "new"
LOCAL_TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d")  # "2026-11-24 08:45": school time


class EndOfInput(Exception):
    """Standard input closed before the conversation finished."""


class Console:
    """One terminal conversation as one member of staff."""

    def __init__(self, svc: Services, stdin: TextIO, stdout: TextIO) -> None:
        self.svc, self.stdin, self.stdout = svc, stdin, stdout
        self.view: CaseView | None = None
        self.zone = ZoneInfo("Europe/London")  # the school's, once signed in

    def say(self, text: str = "") -> None:
        """Print a line."""
        print(text, file=self.stdout, flush=True)

    def ask(self, prompt: str) -> str:
        """Read one answer; EndOfInput when the input is closed."""
        self.say(f"{prompt}\n> ")
        line = self.stdin.readline()
        if not line:
            raise EndOfInput
        return line.rstrip("\n")

    async def session(self, *, email: str, case_ref: str | None, raised_from: str | None = None) -> int:
        """Sign in, then raise a concern (perhaps from an earlier case) or work on a case. Returns the exit code."""
        me = await cases.identify(self.svc, email=email.strip().lower())
        self.say(f"Signed in as {me.name} ({self.svc.policy.role_label(me.role)}).")
        self.zone = await screens.school_zone(self.svc, me)
        try:
            if raised_from:
                return await self.raise_new(me, raised_from=raised_from)
            ref = case_ref or await self.menu(me)
            if ref is None:
                return 0
            return await (self.raise_new(me) if ref == NEW else self.work_on(me, ref))
        except EndOfInput:
            return self.input_ended()

    def input_ended(self) -> int:
        """Say where the case was left; 1 if a step was half answered."""
        if self.view and self.view.step:
            self.say(f"Input ended. Case {self.view.ref} is saved at '{self.view.step.title}'.")
            return 1
        self.say("Input ended.")
        return 0

    async def menu(self, me: Person) -> str | None:
        """Offer a new concern and the cases waiting on this person."""
        mine = [c for c in await views.my_cases(self.svc, actor=me) if c.answerable_by(me)]
        choices = [(NEW, "Raise a new concern")] + [(c.ref, render_case_line(c, self.zone)) for c in mine]
        return self.choose("What would you like to do?", choices)

    def choose(self, prompt: str, choices: list[tuple[str, str]]) -> str:
        """Ask until one of the numbered choices is picked."""
        return str(self.choose_or_skip(prompt, choices, optional=False))

    def choose_or_skip(self, prompt: str, choices: list[tuple[str, str]], *, optional: bool) -> str | None:
        """Ask until one of the numbered choices is picked (or, if `optional`, the answer is left blank)."""
        lines = [prompt] + [f"  {i}) {label}" for i, (_, label) in enumerate(choices, start=1)]
        while True:
            answer = self.ask("\n".join(lines))
            if optional and not answer.strip():
                return None
            picked = pick_one(answer, [value for value, _ in choices])
            if picked is not None:
                return picked
            self.say("! Please answer with one of the numbers shown.")

    async def raise_new(self, me: Person, *, raised_from: str | None = None) -> int:
        """Raise a concern (from an earlier case, if given), then carry on with the steps that are this person's."""
        if raised_from:
            self.say(f"This new concern is linked to case {raised_from.strip().upper()}: the same child.")
        schools = () if raised_from else await screens.school_choices(self.svc, me)
        start = screens.start_screen(self.svc.policy, schools=schools)
        self.view = await self.submit(me, replace(start, raised_from=raised_from))
        self.say(f"Concern raised as case {self.view.ref}.")
        return await self.carry_on(me)

    async def work_on(self, me: Person, ref: str) -> int:
        """Open a case (details are decrypted and the view logged), then answer its steps. A step
        this person may not answer is not offered: they are told whose it is, and the attempt is logged.
        """
        details = await views.open_details(self.svc, actor=me, case_ref=ref)
        self.view = details.view
        self.show_details(details)
        for label, text in await chronology.history(self.svc, actor=me, case_ref=ref):
            self.say(f"  {label}:" + ("\n    " + text.replace("\n", "\n    ") if "\n" in text else f" {text}"))
        if (refusal := await cases.not_theirs(self.svc, actor=me, view=details.view)) is not None:
            self.say(f"\n{refusal}")
        return await self.carry_on(me, opened=True)

    async def carry_on(self, me: Person, *, opened: bool = False) -> int:
        """Answer steps while the case waits on this person (on a case opened by choice, any step they may answer)."""
        while self.view:
            screen = await screens.next_screen(self.svc, me, self.view, owner_only=not opened)
            if not screen.submittable:
                break
            opened = False
            self.view = await self.submit(me, screen)
        self.say_status()
        return 0

    async def submit(self, me: Person, screen: Screen) -> CaseView:
        """Ask every question of a screen, then submit; re-ask a question the bot rejects."""
        self.say(f"\n== {screen.title} ==")
        if screen.help:
            self.say(screen.help)
        values = {q.key: self.ask_question(q) for q in screen.questions}
        while True:
            before = await outbox.latest_id(self.svc)
            reply = screens.reply_to(screen, values)
            try:
                view = await screens.record(self.svc, actor=me, reply=reply, platform="console")
            except InvalidAnswer as exc:
                error = screens.field_error(self.svc.policy.steps.get(reply.step_id), exc)
                bad = screen.question(error.key) or screen.questions[0]
                asked = bad.label if bad.label.endswith("?") else bad.label + ":"  # as asked, never a field key
                self.say(f"! {asked} {error.text.rstrip('.')}.")
                values[bad.key] = self.ask_question(bad)
                continue
            for notice in view.notices:  # the notices first (999, then who knows): never under other output
                self.say(f"\n!!! {notice}\n")
            await self.show_notifications(before)
            return view

    def ask_question(self, q: Question) -> Any:
        """Ask for one question's answer in the way its kind needs."""
        hint = " (leave blank to skip)" if q.optional else ""
        if q.kind is FieldType.CHOICE:
            return self.choose_or_skip(q.label + hint, list(q.choices), optional=q.optional)
        if q.kind in (FieldType.REASONS, FieldType.LEGAL_REFS):
            return self.ask_codes(q)
        if q.kind is FieldType.ASSIGNEE:
            return self.ask_assignee(q)
        if q.kind is FieldType.DUE:
            return self.ask_time(f"{q.label} (date and time, e.g. 2026-11-24 16:00; blank for the policy's default)")
        if q.kind is FieldType.DATETIME:
            return self.ask_time(f"{q.label} (date and time, e.g. 2026-11-24 08:45){hint}")
        if q.kind is FieldType.DATE:
            return self.ask(f"{q.label} (a date: YYYY-MM-DD){hint}") or None
        return self.ask(f"{q.label} (up to {q.max_length} characters){hint}") or None

    def ask_time(self, prompt: str) -> str | None:
        """A date and time: "2026-11-24 08:45" is school time; an ISO time with an offset is kept as typed."""
        return to_school_time(self.ask(prompt).strip(), self.zone) or None

    def ask_codes(self, q: Question) -> list[str]:
        """Ask for reason codes or legal references by number."""
        lines = [q.label] + [f"  {i}) {label}" for i, (_, label) in enumerate(q.choices, start=1)]
        if q.hint:
            lines.append(f"({q.hint})")
        lines.append("Numbers separated by commas" + ("; blank if none applies." if q.kind is FieldType.REASONS else "."))
        while True:
            picked = pick_many(self.ask("\n".join(lines)), [code for code, _ in q.choices])
            if picked is not None:
                return picked
            self.say("! Please answer with numbers from the list, separated by commas.")

    def ask_assignee(self, q: Question) -> str:
        """Ask who is assigned, from the school's staff."""
        lines = [q.label] + [f"  {i}) {label} {email}" for i, (email, label) in enumerate(q.choices, 1)]
        answer = self.ask("\n".join(lines) + "\nA number or an email.")
        picked = pick_one(answer, [email for email, _ in q.choices])
        return picked or answer

    async def show_notifications(self, after_id: int) -> None:
        """Print the notifications the last action queued."""
        for n in await outbox.notices_after(self.svc, after_id=after_id):
            how = f"via {n.platform}" if n.platform in self.svc.delivering or n.platform == "console" else (
                f"queued for {n.platform}, which this deployment does not send on")
            self.say(f"[notification to {n.recipient} ({n.role}) {how}] {n.text}")

    def show_details(self, details: views.CaseDetails) -> None:
        """Print what a case records so far, in words (for an authorised person)."""
        self.say(f"\nCase {details.view.ref}{' (URGENT)' if details.view.urgent else ''}")
        for heading, rows in render_details(details.record):
            self.say(f"  {heading}")
            self.say("\n".join(f"    {label}: {value}" for label, value in rows))

    def say_status(self) -> None:
        """Say where the case stands now."""
        view = self.view
        if view is None:
            return
        if view.outcome:
            self.say(f"Case {view.ref} is closed: {self.svc.policy.outcome_label(view.outcome)}.")
        elif view.step:
            waiting = self.svc.policy.role_label("dsl") if view.step.actor == "dsl" else "the person assigned"
            self.say(f"Case {view.ref} is now waiting for {waiting}: {view.step.title}.")


def render_details(record: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The record's sections with only what is recorded (the referral form is left to the export)."""
    shown = [(heading, [(label, value) for label, value in rows if value != NOT_RECORDED])
             for heading, rows in sections(record) if not heading.startswith("Referral form")]
    return [(heading, rows) for heading, rows in shown if rows]


def render_case_line(c: CaseView, zone: ZoneInfo) -> str:
    """One line of the menu: reference, urgency, what is waited for (and by when, in the school's time)."""
    due = f", due {local_label(c.due_at.astimezone(zone))}" if c.due_at and c.status == "awaiting_outcome" else ""
    return f"{c.ref}{' URGENT' if c.urgent else ''}: {c.step.title if c.step else c.status}{due}"


def to_school_time(answer: str, zone: ZoneInfo) -> str:
    """"2026-11-24 08:45" as an ISO date-time in `zone`; anything else unchanged, for the bot to check."""
    if not LOCAL_TIME.fullmatch(answer):
        return answer
    try:
        return datetime.fromisoformat(answer.replace(" ", "T")).replace(tzinfo=zone).isoformat()
    except ValueError:
        return answer


def pick_one(answer: str, values: list[str]) -> str | None:
    """A 1-based number or a value from `values`."""
    answer = answer.strip()
    if answer.isdigit() and 1 <= int(answer) <= len(values):
        return values[int(answer) - 1]
    return answer if answer in values else None


def pick_many(answer: str, values: list[str]) -> list[str] | None:
    """Comma-separated numbers or values; blank is none."""
    picked = [pick_one(part, values) for part in answer.split(",") if part.strip()]
    return None if any(p is None for p in picked) else [p for p in picked if p]

