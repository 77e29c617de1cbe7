"""`consentbot outbox retry`: notifications that are waiting or were given up, sent again
(registered on `outbox_app` on import).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from bot.cli import fail, run
from bot.cli_commands import outbox_app

if TYPE_CHECKING:
    from bot.cases import Services
    from storage.outbox import Requeued

PLATFORMS = ("slack", "teams", "console")


@outbox_app.command("retry")
def outbox_retry(failed: bool = typer.Option(False, "--failed", help="Also queue again the messages that failed "
                                                                     "(their attempts start again)"),
                 platform: str | None = typer.Option(None, help="Only this platform's queue (slack, teams or "
                                                                "console); all when left out")) -> None:
    """Retry now: waiting notifications become due at once and, with --failed, failed ones are
    queued again. The sender of `serve` (or `outbox drain`) then sends them.
    """
    if platform is not None and platform not in PLATFORMS:
        fail(f"platform must be one of {', '.join(PLATFORMS)}")
    done = run(lambda svc: requeue(svc, platform=platform, failed=failed))
    typer.echo(f"outbox {platform or 'all platforms'}: {said(done, failed=failed)}")


async def requeue(svc: Services, *, platform: str | None, failed: bool) -> Requeued:
    """Make waiting messages due now and, with `failed`, queue failed ones again (storage.outbox.requeue)."""
    from storage import outbox

    async with svc.db.transaction() as s:
        return await outbox.requeue(s, now=svc.clock(), platform=platform, failed=failed)


def said(done: Requeued, *, failed: bool) -> str:
    """What `retry` did, in words."""
    waiting = f"{done.waiting} waiting now due"
    if failed:
        return f"{done.failed} failed queued again, {waiting}"
    hint = " (add --failed to queue them again)" if done.failed_left else ""
    return f"{waiting}, {done.failed_left} failed left as they are{hint}"
