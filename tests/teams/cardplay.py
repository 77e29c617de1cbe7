"""Reading and filling Adaptive Cards as Teams would: what a person sees, and what Teams sends
when they press a button (the action's data with every input's value merged in).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

CHILD = "Zephyrine Quillfeather"  # canary: must never reach chat, notifications or logs
WORDS = f"{CHILD} told me her stepfather hits her"


def walk(items: Any) -> Iterator[dict[str, Any]]:
    """Every element of a card body, containers opened."""
    for item in items or []:
        if isinstance(item, dict):
            yield item
            yield from walk(item.get("items"))
            yield from walk(item.get("columns"))
            yield from walk(item.get("actions") if item.get("type") == "ActionSet" else None)


def inputs(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in walk(card.get("body")) if str(e.get("type", "")).startswith("Input.")]


def input_ids(card: dict[str, Any]) -> list[str]:
    return [str(e["id"]) for e in inputs(card)]


def text(card: dict[str, Any]) -> str:
    """What a person reads on the card."""
    parts = []
    for e in walk(card.get("body")):
        parts.append(str(e.get("text") or ""))
        parts += [f"{f.get('title')} {f.get('value')}" for f in e.get("facts") or []]
    return " ".join(parts)


def actions(card: dict[str, Any]) -> list[dict[str, Any]]:
    return list(card.get("actions") or []) + [a for e in walk(card.get("body")) if e.get("type") == "ActionSet"
                                                for a in e.get("actions") or []]


def action(card: dict[str, Any], title: str) -> dict[str, Any]:
    [found] = [a for a in actions(card) if a.get("title") == title]
    return found


def filled(card: dict[str, Any], answers: dict[str, Any], *, title: str = "Next") -> dict[str, Any]:
    """The data Teams sends for `title`: the action's data and the inputs' values (a multi-select
    as "a,b"; a date and time as two inputs `key.date` and `key.time`).
    """
    ids = set(input_ids(card))
    values: dict[str, Any] = {}
    for key, value in answers.items():
        if isinstance(value, list):
            values[key] = ",".join(value)
        elif f"{key}.date" in ids and isinstance(value, tuple):
            values[f"{key}.date"], values[f"{key}.time"] = value
        else:
            values[key] = value
    unknown = set(values) - ids
    assert not unknown, f"the card does not ask {sorted(unknown)} (it asks {sorted(ids)})"
    return {**action(card, title)["data"], **values}


def dialog_card(body: dict[str, Any]) -> dict[str, Any]:
    """The card a task/fetch or task/submit answer shows."""
    assert body["task"]["type"] == "continue", body
    return dict(body["task"]["value"]["card"]["content"])


def invoke_card(body: dict[str, Any]) -> dict[str, Any]:
    """The card an adaptiveCard/action answer shows."""
    assert body["statusCode"] == 200 and body["type"] == "application/vnd.microsoft.card.adaptive", body
    return dict(body["value"])
