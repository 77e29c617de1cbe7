"""Benchmark: validating a policy against its length of chained yes/no steps.

A chain of n yes/no steps has 2**n paths; the validator walks path states, not paths, so its
time should grow with n, not 2**n. Baseline, measured in the same run: reading and parsing the
same file as YAML (what any load costs). Each validation runs with an empty cache folder, so
it really validates, and the chain with a hole at its end must be refused (proof of the work).

    .venv/bin/python bench/bench_policy.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from bot.policy.loader import PolicyError, load_policy  # noqa: E402
from tests.test_policy import chained  # noqa: E402

ROUNDS = 5


def median_seconds(work: object) -> float:
    times = []
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory() as cache:
            os.environ["XDG_CACHE_HOME"] = cache  # nothing remembered: every round validates
            start = time.perf_counter()
            work()  # type: ignore[operator]
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    print(f"{'chained steps':>14} {'paths':>14} {'parse ms':>9} {'validate ms':>12} {'ratio':>7}  hole refused")
    for n in (0, 10, 20, 30):
        good, hole = folder / f"chain{n}.yaml", folder / f"hole{n}.yaml"
        good.write_text(chained(n))
        hole.write_text(chained(max(n, 1), hole=True))
        parse = median_seconds(lambda good=good: yaml.safe_load(good.read_text()))
        check = median_seconds(lambda good=good: load_policy(good))
        try:
            load_policy(hole)
            refused = "NO"
        except PolicyError:
            refused = "yes"
        assert refused == "yes", "the validator did not catch the hole: it did no work"
        print(f"{n:>14} {2 ** n:>14,} {parse * 1000:>9.1f} {check * 1000:>12.1f} {check / parse:>7.1f}  {refused}")


if __name__ == "__main__":
    main()
