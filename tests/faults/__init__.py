"""The fault suite (issue 8), shared by tests/test_faults.py (short, in CI) and bench/bench_faults.py
(longer, with figures): the real outbox sender and the real Slack client against the fake Slack over
HTTP, on real databases, while faults are injected; then what was held is counted from the posts
the fake Slack recorded.

- `inject`: the faults themselves (a Slack outage, stalls, 429s, a database refused or black-holed,
  a SQLite file locked by another process).
- `scenarios`: the five scenarios and their timings (CI, bench, and the real timing with `--long`).
- `outcome`: what was held, as one table row per scenario.
"""
