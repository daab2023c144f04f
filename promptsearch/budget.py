"""Search budgets, enforced by the evaluator before every dev scoring.

Each limit is checked before a scoring starts, so a search stops at the first scoring that
would start past a limit, with its best-so-far kept; one scoring (one candidate on a slice
of dev) can carry the total past a limit, never more. Cache hits are free for every limit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Budget:
    max_evals: int | None = None  # example-level scorings on the dev split
    max_calls: int | None = None  # model calls (cache hits are free)
    max_seconds: float | None = None  # wall-clock seconds of search
    max_tokens: int | None = None  # tokens processed by the model(s), proposer included
    max_dollars: float | None = None  # dollars at the price table's prices, proposer included

    def to_dict(self) -> dict:
        return dict(self.__dict__)
