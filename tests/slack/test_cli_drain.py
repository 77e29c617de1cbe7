"""`consentbot outbox drain`, run as a process, delivers the queue to (fake) Slack once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bot.crypto import generate_key
from tests.cli.harness import run_in_process
from tests.fakes.slack_api import FakeSlack
from tests.slack.conftest import TOKEN, make_services
from tests.slack.test_sender import delivered_keys, queue, recipients

CONSENTBOT = str(Path(sys.executable).with_name("consentbot"))
KEY = generate_key("k")  # one deployment, one key: every process of these tests uses it


def drain_command(url: str, fake: FakeSlack) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSENTBOT_", "SLACK_", "TEAMS_"))}
    env.update(DATABASE_URL=url, CONSENTBOT_ENCRYPTION_KEY=KEY, SLACK_BOT_TOKEN=TOKEN,
               SLACK_API_URL=fake.url)
    return subprocess.run([CONSENTBOT, "outbox", "drain", "--wait", "2"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


async def test_drain_sends_the_queue_once_and_says_what_it_did(tmp_path: Path, fake_slack: FakeSlack) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    svc = await make_services(url)
    to = await recipients(svc, 2)
    await queue(svc, to, 3)
    await svc.db.dispose()

    first = drain_command(url, fake_slack)
    second = drain_command(url, fake_slack)

    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "outbox slack: sent 3"
    assert second.stdout.strip() == "outbox slack: nothing due"
    assert sorted(delivered_keys(fake_slack, to)) == ["test:0", "test:1", "test:2"]


def test_drain_without_slack_configured_says_how_to_configure_it(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db", "CONSENTBOT_ENCRYPTION_KEY": KEY}
    done = run_in_process("outbox", "drain", env=env, cwd=tmp_path)  # a refusal: in this process

    assert done.returncode == 1 and "SLACK_BOT_TOKEN" in done.stderr
