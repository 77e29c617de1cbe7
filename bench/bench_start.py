"""Benchmark: how fast `consentbot` starts and how small it idles, as ratios against `python -c pass`.

    .venv/bin/python bench/bench_start.py [--runs 7] [--slack]

Prints the median of `--runs` runs of: `python -c pass`; `consentbot --help`; `consentbot serve`
from spawn to its first `/healthz` 200 (SQLite, migrated beforehand; no platforms, or Slack over
HTTP with --slack); and the served process's RSS (MiB) after a second idle. Times are printed
as seconds and as ratios to `python -c pass` measured in the same run, because this machine's
load changes them. Aims (issue 12): --help < 0.2 s, serve to healthz < 0.8 s, idle RSS < 100 MiB.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    return time.perf_counter() - started


def environment(folder: Path, *, slack: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSENTBOT_", "SLACK_", "TEAMS_"))}
    key = subprocess.run([str(BIN / "consentbot"), "keygen"], env=env, check=True, capture_output=True,  # noqa: S603
                         text=True).stdout.strip()
    env |= {"CONSENTBOT_ENV_FILE": os.devnull, "CONSENTBOT_ENV": "development", "CONSENTBOT_ENCRYPTION_KEY": key,
            "DATABASE_URL": f"sqlite+aiosqlite:///{folder}/start.db", "CONSENTBOT_LOG_LEVEL": "WARNING",
            "HOST": "127.0.0.1"}
    if slack:
        env |= {"SLACK_SIGNING_SECRET": "bench-secret", "SLACK_BOT_TOKEN": "xoxb-bench",
                "SLACK_API_URL": "http://127.0.0.1:9/api/"}
    return env


def serve_once(env: dict[str, str]) -> tuple[float, float]:
    """(seconds from spawn to the first /healthz 200, RSS in MiB after a second idle)."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([str(BIN / "consentbot"), "serve"], env={**env, "PORT": str(port)},  # noqa: S603
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"serve exited: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:  # noqa: S310
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.005)
        ready = time.perf_counter() - started
        time.sleep(1.0)
        return ready, rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main(runs: int, slack: bool) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        env = environment(Path(workdir), slack=slack)
        subprocess.run([str(BIN / "consentbot"), "db", "upgrade"], env=env, check=True,  # noqa: S603
                       capture_output=True)
        passes, helps, serves, rss = [], [], [], []
        for _ in range(runs):
            passes.append(timed([sys.executable, "-c", "pass"], env))
            helps.append(timed([str(BIN / "consentbot"), "--help"], env))
            ready, mib = serve_once(env)
            serves.append(ready)
            rss.append(mib)
    base, help_s, serve_s = (statistics.median(x) for x in (passes, helps, serves))
    print(f"consentbot start-up, medians of {runs} runs ({'Slack over HTTP' if slack else 'no platforms'}, SQLite):")
    print(f"  python -c pass        {base:6.3f} s   ratio 1.0")
    print(f"  consentbot --help     {help_s:6.3f} s   ratio {help_s / base:5.1f}   (aim < 0.2 s)")
    print(f"  serve to /healthz 200 {serve_s:6.3f} s   ratio {serve_s / base:5.1f}   (aim < 0.8 s)")
    print(f"  idle RSS              {statistics.median(rss):6.1f} MiB             (aim < 100 MiB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--slack", action="store_true", help="serve with Slack over HTTP configured")
    args = parser.parse_args()
    main(args.runs, args.slack)
