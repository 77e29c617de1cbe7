"""slack/manifest.yml is valid against Slack's own manifest schema (fixtures/slack), and asks
for what the app uses: a manifest Slack refuses is a school's first hour lost."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT.parent / "shared" / "fixtures" / "slack" / "manifest.schema.1.0.0.json"


def manifest() -> dict:
    return yaml.safe_load((ROOT / "slack" / "manifest.yml").read_text())


def test_the_manifest_is_valid_against_slacks_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(manifest()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_check_would_catch_a_name_slack_refuses() -> None:
    bad = manifest()
    bad["features"]["shortcuts"][0]["name"] = "Raise a safeguarding concern"  # 28 characters: Slack's limit is 24
    schema = json.loads(SCHEMA.read_text())
    assert any("too long" in e.message for e in jsonschema.Draft7Validator(schema).iter_errors(bad))


def test_the_manifest_wires_what_the_app_handles() -> None:
    m = manifest()
    assert [c["command"] for c in m["features"]["slash_commands"]] == ["/concern"]
    assert {s["callback_id"] for s in m["features"]["shortcuts"]} == {"concern_global", "concern_from_message"}
    assert "app_home_opened" in m["settings"]["event_subscriptions"]["bot_events"]


def test_the_manifest_names_the_oauth_redirect_of_several_workspaces() -> None:
    # Bolt's OAuth flow (handlers/slack/oauth.py) answers there; Slack refuses an install sent anywhere else.
    urls = manifest()["oauth_config"]["redirect_urls"]
    request_url = manifest()["settings"]["event_subscriptions"]["request_url"]
    assert urls == [request_url.removesuffix("/slack/events") + "/slack/oauth_redirect"]
    assert urls[0].endswith("/slack/oauth_redirect")
