"""The HF backend's prefix KV store: per-layer keys and values of token prefixes, kept
between calls (an instruction every candidate shares, an input every trigger follows), the
least recently used dropped past a token limit. Pure bookkeeping: what is stored is opaque
here, and the backend runs the model."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

PREFIX_CACHE_TOKENS = 8_192  # prefix KV kept between calls, in tokens (~0.4 GB for SmolLM2-135M)


class PrefixStore:
    def __init__(self, max_tokens: int = PREFIX_CACHE_TOKENS):
        self.max_tokens = max_tokens
        self._kv: OrderedDict[tuple[int, ...], Any] = OrderedDict()

    def __contains__(self, prefix: tuple[int, ...]) -> bool:
        return prefix in self._kv

    def __len__(self) -> int:
        return len(self._kv)

    def clear(self) -> None:
        self._kv.clear()

    def get(self, prefix: tuple[int, ...]) -> Any | None:
        """The prefix's KV, now the most recently used; None if it is not kept."""
        kv = self._kv.get(prefix)
        if kv is not None:
            self._kv.move_to_end(prefix)
        return kv

    def longest_start(self, prefix: tuple[int, ...]) -> tuple[int, Any | None]:
        """(length, KV) of the longest kept prefix that `prefix` starts with and extends
        (0, None if there is none): only the rest of `prefix` then has to run."""
        best_len, best_kv = 0, None
        for key, kv in self._kv.items():
            if best_len < len(key) < len(prefix) and prefix[: len(key)] == key:
                best_len, best_kv = len(key), kv
        return best_len, best_kv

    def keep(self, prefix: tuple[int, ...], kv: Any) -> None:
        """Keep it; drop the least recently used while more than `max_tokens` are kept (the
        newest always stays)."""
        self._kv[prefix] = kv
        while len(self._kv) > 1 and sum(len(k) for k in self._kv) > self.max_tokens:
            self._kv.popitem(last=False)
