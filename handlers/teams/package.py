"""The Teams app package: `manifest.json` and its two icons in one zip, for upload to Teams.

The manifest follows the v1.29 schema (https://learn.microsoft.com/microsoftteams/platform/resources/schema/manifest-schema):
Teams refuses a package whose manifest breaks the schema it declares. The icons are drawn here,
with zlib and struct, so that no binary file lives in the repository.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

SCHEMA_URL = "https://developer.microsoft.com/en-us/json-schemas/teams/v1.29/MicrosoftTeams.schema.json"
MANIFEST_VERSION = "1.29"
ACCENT = (0x1F, 0x5F, 0x8B)
ACCENT_HEX = "#{:02X}{:02X}{:02X}".format(*ACCENT)
PLACEHOLDER_SITE = "https://consentbot.example.org"  # marked as a placeholder: docs/teams-setup.md says to replace it
# The names the Graph notification code sends (topic templates take {caseRef}); renaming one breaks its sends.
URGENT_ACTIVITY = "urgentConcern"
DECISION_ACTIVITY = "decisionNeeded"
MESSAGE_ACTION = "concern_from_message"
_GUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_HOST = re.compile(r"(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the same inputs give the same bytes


def is_guid(value: str) -> bool:
    """Whether `value` is a GUID as Teams and Entra write them."""
    return _GUID.fullmatch(value) is not None


def is_host(value: str) -> bool:
    """Whether `value` is a DNS host name with a dot (no scheme, port or path)."""
    return _HOST.fullmatch(value) is not None


def manifest(*, app_id: str, bot_id: str, name: str = "Consentbot", domain: str | None = None,
             version: str = "1.0.0", website_url: str | None = None, privacy_url: str | None = None,
             terms_url: str | None = None) -> dict[str, Any]:
    """The app manifest. Raises ValueError naming the argument that Teams would refuse."""
    _check(app_id=app_id, bot_id=bot_id, name=name, domain=domain, version=version)
    site = f"https://{domain}" if domain else PLACEHOLDER_SITE
    developer = {"name": name, "websiteUrl": _https(website_url or f"{site}/", "website URL"),
                 "privacyUrl": _https(privacy_url or f"{site}/privacy", "privacy URL"),
                 "termsOfUseUrl": _https(terms_url or f"{site}/terms", "terms of use URL")}
    result: dict[str, Any] = {
        "$schema": SCHEMA_URL, "manifestVersion": MANIFEST_VERSION, "version": version, "id": app_id,
        "developer": developer,
        "name": {"short": name, "full": f"{name}: safeguarding consent checklist"},
        "description": {
            "short": "Raise a safeguarding concern and work through consent with your DSL.",
            "full": ("Raise a child-protection concern from chat and work through the school's information-sharing "
                     "consent checklist with the Designated Safeguarding Lead (DSL), who decides from a phone. "
                     "Messages carry a case reference only: the details open in a private dialog for the DSL, "
                     "deputies and the people involved, and every opening is logged."),
        },
        "icons": {"color": "color.png", "outline": "outline.png"},
        "accentColor": ACCENT_HEX,
        "bots": [_bot(bot_id)],
        "composeExtensions": [_message_action(bot_id)],
        "permissions": ["identity", "messageTeamMembers"],
        # The Entra app that sends activity-feed notifications must be named here. TeamsActivity.Send is
        # an application permission granted in Entra, so no resource-specific consent is declared.
        "webApplicationInfo": {"id": bot_id, "resource": f"api://botid-{bot_id}"},
        "activities": {"activityTypes": _activity_types()},
        "defaultInstallScope": "personal",
    }
    if domain:
        result["validDomains"] = [domain]
    return result


def build_package(*, app_id: str, bot_id: str, name: str = "Consentbot", domain: str | None = None,
                  version: str = "1.0.0", website_url: str | None = None, privacy_url: str | None = None,
                  terms_url: str | None = None) -> bytes:
    """The zip Teams takes: `manifest.json`, `color.png` (192x192) and `outline.png` (32x32) at its root."""
    body = manifest(app_id=app_id, bot_id=bot_id, name=name, domain=domain, version=version,
                    website_url=website_url, privacy_url=privacy_url, terms_url=terms_url)
    files = {"manifest.json": json.dumps(body, indent=2, ensure_ascii=False).encode() + b"\n",
             "color.png": color_icon(), "outline.png": outline_icon()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for filename, data in files.items():
            archive.writestr(zipfile.ZipInfo(filename, date_time=_FIXED_TIME), data,
                             compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _check(*, app_id: str, bot_id: str, name: str, domain: str | None, version: str) -> None:
    if not is_guid(app_id):
        raise ValueError("the app id (the manifest id) must be a GUID")
    if not is_guid(bot_id):
        raise ValueError("the bot id (the Entra Application (client) id) must be a GUID")
    if not 0 < len(name) <= 30:
        raise ValueError("the name must be 1 to 30 characters (Teams' limit for an app's short name)")
    if domain is not None and not is_host(domain):
        raise ValueError("the domain must be a host name such as consentbot.school.example (no port)")
    if not re.fullmatch(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)", version):
        raise ValueError("the version must be MAJOR.MINOR.PATCH, e.g. 1.0.1")


def _https(url: str, argument: str) -> str:
    if not url.startswith("https://") or len(url) > 2048:
        raise ValueError(f"the {argument} must be an https:// address")
    return url


def _bot(bot_id: str) -> dict[str, Any]:
    commands = [{"title": "concern", "description": "Raise a safeguarding concern"},
                {"title": "cases", "description": "Cases waiting for you"},
                {"title": "help", "description": "What consentbot does and who to ask"}]
    return {"botId": bot_id, "scopes": ["personal"], "supportsFiles": False, "isNotificationOnly": False,
            "commandLists": [{"scopes": ["personal"], "commands": commands}]}


def _message_action(bot_id: str) -> dict[str, Any]:
    command = {"id": MESSAGE_ACTION, "type": "action", "context": ["message"], "fetchTask": True,
               "title": "Raise a concern",
               "description": "Raise a safeguarding concern about this message; it is quoted in the form."}
    return {"botId": bot_id, "composeExtensionType": "botBased", "commands": [command]}


def _activity_types() -> list[dict[str, str]]:
    return [{"type": URGENT_ACTIVITY, "description": "An urgent safeguarding concern needs a DSL now",
             "templateText": "Urgent safeguarding concern {caseRef}: open it in Teams"},
            {"type": DECISION_ACTIVITY, "description": "A safeguarding concern is waiting for a DSL's decision",
             "templateText": "Concern {caseRef} needs your decision"}]


# The icons: a shield with a tick. Shapes are functions of (x, y) in [0, 1], smoothed at their edges.

def _in_shield(x: float, y: float, scale: float = 1.0) -> bool:
    """Inside a shield centred at (0.5, 0.5): straight sides, then curving in to a point."""
    x, y = 0.5 + (x - 0.5) / scale, 0.5 + (y - 0.5) / scale
    top, waist, bottom, half = 0.12, 0.50, 0.90, 0.33
    if not top <= y <= bottom:
        return False
    t = max(0.0, (y - waist) / (bottom - waist))
    return abs(x - 0.5) <= half * (1 - t * t)


def _on_tick(x: float, y: float, thickness: float) -> bool:
    points = ((0.35, 0.49), (0.46, 0.61), (0.67, 0.36))
    return any(_near_segment(x, y, a, b, thickness) for a, b in zip(points, points[1:], strict=False))


def _near_segment(x: float, y: float, a: tuple[float, float], b: tuple[float, float], radius: float) -> bool:
    dx, dy = b[0] - a[0], b[1] - a[1]
    t = max(0.0, min(1.0, ((x - a[0]) * dx + (y - a[1]) * dy) / (dx * dx + dy * dy)))
    px, py = a[0] + t * dx - x, a[1] + t * dy - y
    return px * px + py * py <= radius * radius


def _coverage(size: int, inside: Callable[[float, float], bool]) -> list[list[float]]:
    """The share of each pixel inside the shape: 0 or 1 where the pixel's four corners agree, else 4x4 samples."""
    corners = [[inside(col / size, row / size) for col in range(size + 1)] for row in range(size + 1)]
    n = 4

    def pixel(row: int, col: int) -> float:
        seen = {corners[row][col], corners[row][col + 1], corners[row + 1][col], corners[row + 1][col + 1]}
        if len(seen) == 1:
            return float(seen.pop())
        return sum(inside((col + (i + 0.5) / n) / size, (row + (j + 0.5) / n) / size)
                   for i in range(n) for j in range(n)) / (n * n)

    return [[pixel(row, col) for col in range(size)] for row in range(size)]


def color_icon() -> bytes:
    """192x192 RGB: a white shield with a tick in the accent colour, on the accent colour."""
    size = 192
    white = _coverage(size, lambda x, y: _in_shield(x, y) and not _on_tick(x, y, 0.045))
    rows = [bytes(round(c * (1 - w) + 255 * w) for w in row for c in ACCENT) for row in white]
    return png(size, size, rows, alpha=False)


def outline_icon() -> bytes:
    """32x32 RGBA: the shield's outline and the tick in white on transparent, as Teams asks."""
    size = 32

    def mark(x: float, y: float) -> bool:
        return (_in_shield(x, y) and not _in_shield(x, y, 0.78)) or _on_tick(x, y, 0.05)

    rows = [b"".join(bytes((255, 255, 255, round(255 * a))) for a in row) for row in _coverage(size, mark)]
    return png(size, size, rows, alpha=True)


def png(width: int, height: int, rows: list[bytes], *, alpha: bool) -> bytes:
    """An 8-bit RGB or RGBA PNG of `rows` (each row's pixels, unfiltered)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if alpha else 2, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 (None) on every row
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b""))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
