"""Search budgets, enforced by the evaluator before every slice of a dev (or train) scoring.

Evaluation and call budgets are never passed: a scoring that would pass `max_evals`, or a
slice of one (at most `Evaluator.chunk_size` example scorings) whose uncached requests would
pass `max_calls`, does not start. Time, token and dollar budgets are checked before each
slice, so one slice can carry the total past them, never more. The search stops at the
first check that fails, with its best-so-far kept. Cache hits are free for every limit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Budget:
    max_evals: int | None = None  # example scorings during the search (dev; train where a searcher scores it)
    max_calls: int | None = None  # model calls (cache hits are free)
    max_seconds: float | None = None  # wall-clock seconds of search
    max_tokens: int | None = None  # tokens processed by the model(s), proposer included
    max_dollars: float | None = None  # dollars at the price table's prices, proposer included

    def __post_init__(self):
        import math

        from promptsearch.errors import PromptSearchError

        for name, value in self.__dict__.items():
            if value is not None and (
                not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0
            ):
                raise PromptSearchError(f"Budget {name}={value!r} must be a number of at least 0 (or left unset).")

    def to_dict(self) -> dict:
        return dict(self.__dict__)
