"""The HF backend's batch planner on its own: pure Python on token ids, no model, no torch."""

from __future__ import annotations

import subprocess
import sys

from promptsearch.backends.batching import MIN_SHARED_PREFIX, partition, plan, shared


def _toy_rows(prefix_tokens: list[int], n: int, suffix_len: int = 6, start: int = 5000):
    return [
        (
            prefix_tokens + list(range(start + 10 * i, start + 10 * i + suffix_len)),
            [(i, len(prefix_tokens) + suffix_len - 1, 1)],
        )
        for i in range(n)
    ]


def test_partition_gives_inputs_that_start_alike_their_own_clusters():
    """Two inputs that share their first words, each under many triggers: two clusters, each
    cut at its own input's end (not one cluster at the words they share); a short input
    under many triggers is a cluster too, though its prefix is under MIN_SHARED_PREFIX; two
    rows sharing little stay loose."""
    a = _toy_rows([1, 2, 3, 10, 11, 12, 13, 14, 15, 16, 17], 8)
    b = _toy_rows([1, 2, 3, 10, 11, 20, 21, 22, 23, 24, 25, 26], 8, start=6000)
    short = _toy_rows([1, 2, 3, 30, 31], 16, start=7000)
    loose = [([1, 2, 3, 40, 41, 42], [(0, 5, 1)]), ([1, 2, 3, 40, 50, 51], [(1, 5, 1)])]
    rows = sorted(a + b + short + loose, key=lambda r: r[0])
    parts = partition(rows, every=3)
    cuts = sorted((len(m), c) for m, c in parts if c is not None)
    assert cuts == [(8, 11), (8, 12), (16, 5)]
    assert 5 < MIN_SHARED_PREFIX
    assert sorted(len(m) for m, c in parts if c is None) == [1, 1]
    assert sum(len(m) for m, _ in parts) == len(rows)


def test_plan_keeps_every_row_once_within_the_token_budget():
    rows = sorted(
        _toy_rows([1, 2, 3, 10, 11, 12, 13, 14, 15, 16, 17], 20) + _toy_rows([1, 2, 3, 40, 41], 20, start=500),
        key=lambda r: r[0],
    )
    every = shared(rows)  # what all rows share: a plain batch runs it once
    for sharing in ("clusters", "per-cluster", "batch"):
        batches = plan(rows, sharing, batch_tokens=64, max_batch=16)
        assert sorted(tuple(r[0]) for b, _ in batches for r in b) == sorted(tuple(r[0]) for r in rows)
        for b, cuts in batches:
            skip = cuts or [every] * len(b)
            assert len(b) <= 16 and (max(len(r[0]) - c for r, c in zip(b, skip)) * len(b) <= 64 or len(b) == 1)


def test_the_planner_imports_no_torch():
    code = "import sys, promptsearch.backends.batching; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
