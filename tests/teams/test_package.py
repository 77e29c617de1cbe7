"""`consentbot teams package`: the zip Teams takes, built through the real command and checked
against Microsoft's published manifest schema; the icons decoded byte by byte."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from handlers.teams.package import build_package, manifest
from tests.cli.harness import run_in_process

ROOT = Path(__file__).resolve().parents[2]
# CI clones the repository beside shared/ (X/main and X/shared), as on the development machine.
SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "teams" / "MicrosoftTeams.schema.v1.29.json"
CLIENT_ID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
OTHER_ID = "11111111-2222-4333-8444-555555555555"
HOST = "consentbot.school.example"


def consentbot(*args: str, cwd: Path, client_id: str | None = CLIENT_ID) -> subprocess.CompletedProcess[str]:
    """The console script `consentbot = bot.cli:main`, run in `cwd` (no .env there) with only TEAMS_CLIENT_ID set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSENTBOT_", "SLACK_", "TEAMS_", "DATABASE_"))}
    env["PYTHONPATH"] = str(ROOT)
    if client_id is not None:
        env["TEAMS_CLIENT_ID"] = client_id
    return subprocess.run([sys.executable, "-c", "from bot.cli import main; main()", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def consentbot_here(*args: str, cwd: Path, client_id: str | None = CLIENT_ID) -> subprocess.CompletedProcess[str]:
    """The same command in this process (typer's runner), for what it prints and writes; `built` runs the process."""
    return run_in_process(*args, env={} if client_id is None else {"TEAMS_CLIENT_ID": client_id}, cwd=cwd)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    if not SCHEMA.is_file():
        pytest.fail(f"the Teams manifest schema is missing: expected {SCHEMA} (shared/ beside the repository)")
    schema = json.loads(SCHEMA.read_text())
    # Not the metaschema's "regex" format: Microsoft's patterns use ECMAScript's \\p{L}, which Python's re lacks.
    jsonschema.Draft4Validator.check_schema(schema, format_checker=None)
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The package as the command writes it with --domain given as the messaging endpoint's address."""
    cwd = tmp_path_factory.mktemp("package")
    result = consentbot("teams", "package", "--domain", f"https://{HOST}/api/messages", cwd=cwd)
    assert result.returncode == 0, result.stderr
    out = cwd / "consentbot-teams.zip"
    assert f"wrote {out.name}" in result.stdout
    assert "Teams admin centre > Teams apps > Manage apps > Upload new app" in result.stdout
    return zipfile.ZipFile(io.BytesIO(out.read_bytes()))


def read_manifest(package: zipfile.ZipFile) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(package.read("manifest.json"))
    return data


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The command's error lines (the Teams SDK may add a warning of its own on import)."""
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def schema_errors(validator: jsonschema.Draft4Validator, body: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]


def test_the_package_holds_a_manifest_valid_against_the_schema_it_declares(
        built: zipfile.ZipFile, validator: jsonschema.Draft4Validator) -> None:
    assert sorted(built.namelist()) == ["color.png", "manifest.json", "outline.png"]  # at the root, as Teams needs
    body = read_manifest(built)
    assert schema_errors(validator, body) == []
    assert body["manifestVersion"] == "1.29" and "/v1.29/" in body["$schema"]
    assert body["id"] == CLIENT_ID and body["bots"][0]["botId"] == CLIENT_ID
    assert body["validDomains"] == [HOST]
    assert body["webApplicationInfo"] == {"id": CLIENT_ID, "resource": f"api://botid-{CLIENT_ID}"}
    assert body["developer"]["privacyUrl"] == f"https://{HOST}/privacy"
    assert body["icons"] == {"color": "color.png", "outline": "outline.png"}
    assert body["permissions"] == ["identity", "messageTeamMembers"]


def test_the_bot_is_personal_with_its_three_commands(built: zipfile.ZipFile) -> None:
    (bot,) = read_manifest(built)["bots"]
    assert bot["scopes"] == ["personal"] and bot["supportsFiles"] is False and bot["isNotificationOnly"] is False
    (commands,) = bot["commandLists"]
    assert commands["scopes"] == ["personal"]
    assert {c["title"]: c["description"] for c in commands["commands"]} == {
        "concern": "Raise a safeguarding concern", "cases": "Cases waiting for you",
        "help": "What consentbot does and who to ask"}


def test_the_message_action_concern_from_message_fetches_its_dialog(built: zipfile.ZipFile) -> None:
    (extension,) = read_manifest(built)["composeExtensions"]
    assert extension["botId"] == CLIENT_ID
    (command,) = extension["commands"]
    assert command["id"] == "concern_from_message"
    assert (command["type"], command["context"], command["fetchTask"]) == ("action", ["message"], True)
    assert command["title"] == "Raise a concern"


def test_the_activity_types_the_graph_notifications_use_are_declared(built: zipfile.ZipFile) -> None:
    types = {a["type"]: a for a in read_manifest(built)["activities"]["activityTypes"]}
    assert sorted(types) == ["decisionNeeded", "urgentConcern"]
    assert types["urgentConcern"]["templateText"] == "Urgent safeguarding concern {caseRef}: open it in Teams"
    assert types["urgentConcern"]["description"] == "An urgent safeguarding concern needs a DSL now"
    assert types["decisionNeeded"]["templateText"] == "Concern {caseRef} needs your decision"


def test_without_a_domain_the_links_are_marked_placeholders_and_still_valid(validator: jsonschema.Draft4Validator) -> None:
    body = manifest(app_id=OTHER_ID, bot_id=CLIENT_ID)
    assert schema_errors(validator, body) == []
    assert "validDomains" not in body
    assert all(body["developer"][k].startswith("https://consentbot.example.org/")
               for k in ("websiteUrl", "privacyUrl", "termsOfUseUrl"))


def test_app_id_and_the_school_pages_are_taken_from_the_options(tmp_path: Path,
                                                                validator: jsonschema.Draft4Validator) -> None:
    result = consentbot_here("teams", "package", "--out", "app.zip", "--app-id", OTHER_ID, "--name", "Oak Safeguarding",
                             "--app-version", "1.0.3", "--privacy-url", "https://oak.sch.uk/privacy",
                             "--terms-url", "https://oak.sch.uk/terms", "--website-url", "https://oak.sch.uk/",
                             cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "note:" not in result.stdout  # nothing left to a default link
    body = read_manifest(zipfile.ZipFile(tmp_path / "app.zip"))
    assert schema_errors(validator, body) == []
    assert (body["id"], body["bots"][0]["botId"], body["version"]) == (OTHER_ID, CLIENT_ID, "1.0.3")
    assert body["name"]["short"] == "Oak Safeguarding" and body["developer"]["termsOfUseUrl"] == "https://oak.sch.uk/terms"


def test_the_same_inputs_build_the_same_bytes() -> None:
    assert build_package(app_id=CLIENT_ID, bot_id=CLIENT_ID) == build_package(app_id=CLIENT_ID, bot_id=CLIENT_ID)


@pytest.mark.parametrize("client_id, said", [(None, "TEAMS_CLIENT_ID is not set"),
                                             ("my-bot", "TEAMS_CLIENT_ID is not a GUID")])
def test_without_a_valid_client_id_it_says_so_in_one_line(tmp_path: Path, client_id: str | None, said: str) -> None:
    result = consentbot_here("teams", "package", cwd=tmp_path, client_id=client_id)
    assert result.returncode == 1
    (line,) = errors(result)
    assert said in line and line.endswith("(see docs/teams-setup.md)")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_replaced_only_with_force(tmp_path: Path) -> None:
    out = tmp_path / "consentbot-teams.zip"
    out.write_bytes(b"an older package")
    refused = consentbot_here("teams", "package", cwd=tmp_path)
    assert refused.returncode == 1 and errors(refused) == [f"error: {out.name} exists: pass --force to replace it"]
    assert out.read_bytes() == b"an older package"
    forced = consentbot_here("teams", "package", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert zipfile.ZipFile(out).namelist()


@pytest.mark.parametrize("argument, value, said", [("name", "x" * 31, "1 to 30 characters"),
                                                   ("app_id", "not-a-guid", "must be a GUID"),
                                                   ("privacy_url", "http://oak.sch.uk/privacy", "https://"),
                                                   ("domain", "consentbot", "host name"),
                                                   ("version", "1.0", "MAJOR.MINOR.PATCH")])
def test_what_teams_would_refuse_is_refused(argument: str, value: str, said: str) -> None:
    arguments: dict[str, Any] = {"app_id": CLIENT_ID, "bot_id": CLIENT_ID, argument: value}
    with pytest.raises(ValueError, match=said):
        manifest(**arguments)


def test_the_command_refuses_it_in_one_line_before_writing(tmp_path: Path) -> None:
    result = consentbot_here("teams", "package", "--name", "x" * 31, cwd=tmp_path)
    assert result.returncode == 1
    assert errors(result) == ["error: the name must be 1 to 30 characters (Teams' limit for an app's short name)"]
    assert list(tmp_path.iterdir()) == []


# The icons: a small PNG reader that checks every CRC and undoes the row filters.

def read_png(data: bytes) -> tuple[dict[str, int], list[bytes]]:
    """IHDR fields and the unfiltered rows of an 8-bit, non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    header = {"width": width, "height": height, "depth": depth, "colour": colour, "interlace": interlace}
    assert depth == 8 and interlace == 0 and colour in (2, 6)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    channels = 4 if colour == 6 else 3
    return header, unfilter(raw, width * channels, height, channels)


def unfilter(raw: bytes, stride: int, height: int, bpp: int) -> list[bytes]:
    assert len(raw) == height * (stride + 1)
    rows: list[bytes] = []
    previous = bytes(stride)
    for r in range(height):
        kind, line = raw[r * (stride + 1)], bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        for i in range(stride):
            a, b = line[i - bpp] if i >= bpp else 0, previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + (0, a, b, (a + b) // 2, paeth(a, b, c))[kind]) & 0xFF
        rows.append(previous := bytes(line))
    return rows


def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def pixels(rows: list[bytes], channels: int) -> list[tuple[int, ...]]:
    return [tuple(row[i:i + channels]) for row in rows for i in range(0, len(row), channels)]


def test_the_colour_icon_is_192_square_full_colour(built: zipfile.ZipFile) -> None:
    header, rows = read_png(built.read("color.png"))
    assert (header["width"], header["height"], header["colour"]) == (192, 192, 2)
    colours = set(pixels(rows, 3))
    assert (0x1F, 0x5F, 0x8B) in colours and (255, 255, 255) in colours  # the accent colour and the white shield
    accent = read_manifest(built)["accentColor"]
    assert tuple(rows[0][:3]) == tuple(bytes.fromhex(accent[1:]))  # its background is the accent colour


def test_the_outline_icon_is_32_square_white_on_transparent(built: zipfile.ZipFile) -> None:
    header, rows = read_png(built.read("outline.png"))
    assert (header["width"], header["height"], header["colour"]) == (32, 32, 6)  # RGBA
    seen = pixels(rows, 4)
    assert all(p[:3] == (255, 255, 255) or p[3] == 0 for p in seen), "only white and transparent pixels"
    opaque = sum(1 for p in seen if p[3] == 255)
    assert 50 < opaque < 32 * 32 // 2  # a drawn mark, mostly transparent around it
    assert seen[0][3] == 0 and seen[-1][3] == 0
