"""Benchmarks, run with ``make bench`` (``python -m benchmarks``); not part of the test suite.

One run measures our stores and ``SessionManager`` against the Agents SDK's own session
stores, in the same process and at equal durability, and prints each figure beside the
SDK's, their ratio and the target the scale issue sets (``PASS``/``MISS``; a miss never
fails the run). The results also go to ``benchmarks/results/latest.md``.

Each public module is one scenario and offers ``async def run(bench) -> list[Section]``:

- ``per_turn``: a turn's store cost at turn 10 and 2,000, and the last-50 read;
- ``concurrent_turns``: 200 sessions x 20 turns at once;
- ``many_sessions``: a fresh process starting on 20,000 sessions (time, memory, listing);
- ``overhead``: what ``send_message`` adds to a bare ``Runner.run``;
- ``file_store_turns``: ``FileStore`` against rewriting the whole file on every turn.

``python -m benchmarks --help`` lists the options (scenarios, store kinds, ``--quick``).
"""
