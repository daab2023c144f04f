"""How the HF backend batches log-likelihood rows: which rows share a prefix (run once, its
KV reused), how rows are cut into batches under a token budget. Pure Python on token ids,
no torch: tested and reasoned about on its own (tests/test_batching.py).

A row is (token ids, [(request index, position read, target token id)])."""

from __future__ import annotations

MIN_SHARED_PREFIX = 8  # below this, a separate prefix pass costs more than it saves
Row = tuple  # (token ids, [(request index, position read, target token id)])


def plan(rows: list[Row], sharing: str, batch_tokens: int, max_batch: int) -> list[tuple[list[Row], list[int] | None]]:
    """Batches, each with the prefix length every row of it skips (its cluster's shared
    prefix, run once and its KV reused), or None for a plain batch.

    Rows are sorted by token ids, so rows sharing a prefix sit together; `partition` cuts
    them into clusters (one input under many candidate triggers, one context under several
    multi-token labels), each at the prefix that runs the fewest positions, and loose rows.
    Clusters are batched together, each row after its own cluster's prefix KV (the
    prefixes run many to a padded forward ahead of their batches, and one forward runs many
    clusters' rows). Loose rows are batched longest first, sharing whatever prefix every
    row has (the instruction and demos), as a plain batch would."""
    if len(rows) < 2:
        return [(rows, None)] if rows else []
    every = shared(rows)
    if sharing not in ("clusters", "per-cluster"):
        return [(b, None) for b in batches(sorted(rows, key=lambda r: -len(r[0])), batch_tokens, max_batch, every)]
    order = sorted(range(len(rows)), key=lambda i: rows[i][0])
    grouped: list[tuple[Row, int]] = []
    loose: list[Row] = []
    for members, at in partition([rows[i] for i in order], every):
        if at is None:
            loose += members
        else:
            grouped += [(r, at) for r in sorted(members, key=lambda r: -len(r[0]))]
    apart = sharing == "per-cluster"  # each cluster in batches of its own (the benchmark's earlier step)
    out = [([r for r, _ in b], [c for _, c in b]) for b in cut(grouped, batch_tokens, max_batch, apart)]
    loose.sort(key=lambda r: -len(r[0]))
    return out + [(b, None) for b in batches(loose, batch_tokens, max_batch, every)]


def batches(rows: list[Row], batch_tokens: int, max_batch: int, discount: int = 0):
    """Rows arrive longest first; cut batches so padded width x rows stays in budget. A
    prefix the rows share is run once, so only what follows it counts (`discount`)."""
    for batch in cut([(r, discount) for r in rows], batch_tokens, max_batch):
        yield [r for r, _ in batch]


def cut(items: list[tuple[Row, int]], batch_tokens: int, max_batch: int, apart: bool = False):
    """Batches of (row, prefix it skips), cut so padded width (after the prefix) x rows
    stays in budget; `apart`: a batch never mixes rows of different prefixes."""
    batch: list[tuple[Row, int]] = []
    width = 0
    for row, skip in items:
        w = max(width, len(row[0]) - skip)
        if batch and (
            w * (len(batch) + 1) > batch_tokens
            or len(batch) >= max_batch
            or (apart and row[0][:skip] != batch[-1][0][0][: batch[-1][1]])
        ):
            yield batch
            batch, w = [], len(row[0]) - skip
        batch.append((row, skip))
        width = w
    if batch:
        yield batch


def partition(rows: list[Row], every: int) -> list[tuple[list[Row], int | None]]:
    """Rows sorted by token ids, cut into runs that each share one prefix (run once, its KV
    reused by the run's rows) and loose rows (None), choosing the cut that runs the fewest
    token positions. A run sharing m tokens is either one cluster after those m tokens or is
    split where its rows share only m, each part deciding again (one input under many
    triggers is one cluster even when two inputs start with the same words). A cluster must
    save at least MIN_SHARED_PREFIX positions over its rows run apart, for the prefix pass and
    the per-row cache it costs; loose rows still share `every` (what all rows have)."""
    lcp = [shared([a, b]) for a, b in zip(rows, rows[1:])]
    out: list[tuple[list[Row], int | None]] = []

    def solve(a: int, b: int, depth: int) -> tuple[int, list]:
        if b - a == 1:
            return len(rows[a][0]) - every, [([rows[a]], None)]
        m = min(lcp[a : b - 1])
        apart_cost, parts = 0, []
        if m > every and depth < 200:
            start = a
            for k in range(a, b):
                if k == b - 1 or lcp[k] == m:
                    c, p = solve(start, k + 1, depth + 1)
                    apart_cost, parts = apart_cost + c, parts + p
                    start = k + 1
        else:  # nothing beyond `every` to share at this level: each row on its own
            apart_cost = sum(len(r[0]) - every for r in rows[a:b])
            parts = [([r], None) for r in rows[a:b]]
        together = m + sum(len(r[0]) - m for r in rows[a:b])
        if m > every and together + MIN_SHARED_PREFIX <= apart_cost:
            return together, [(rows[a:b], m)]
        return apart_cost, parts

    if rows:
        start = 0
        for k in range(len(rows)):  # top-level runs: rows sharing more than `every`
            if k == len(rows) - 1 or lcp[k] <= every:
                out += solve(start, k + 1, 0)[1]
                start = k + 1
    return out


def shared(rows: list[Row]) -> int:
    """Tokens every row shares at its start, stopping before the first position any row
    reads: a read position needs its hidden state from the batch's own forward pass."""
    first = rows[0][0]
    n = min(min(p for _, p, _ in r[1]) for r in rows)
    for ids, _ in rows[1:]:
        i = 0
        while i < n and ids[i] == first[i]:
            i += 1
        n = i
    return n


def truncate(row: Row, max_len: int) -> Row:
    """Left-truncate a row longer than the context window; its reads shift with it."""
    ids, reads = row
    cut = max(0, len(ids) - max_len)
    return (ids[cut:], [(r, p - cut, t) for r, p, t in reads if p - cut >= 0]) if cut else row
