"""What an evaluator's work costs and whether its budget lets the next piece start: the
calls, tokens, seconds and dollars of the target and of attached models (a proposer), less
what scorings outside the budget spent meanwhile; the checks before each slice of a scoring
and each batch of proposer requests (promptsearch/budget.py says what each budget means)."""

from __future__ import annotations

import time
from typing import Callable, Sequence

from promptsearch.budget import Budget
from promptsearch.cost import Usage
from promptsearch.errors import BudgetExhausted, PromptSearchError


class Meter:
    def __init__(self, budget: Budget, backend):
        self.budget, self.backend = budget, backend
        self._others: list = []  # other backends whose cost counts here (an API proposer)
        self.outside_cost = Usage()  # what scorings outside the budget (`outside_budget`) spent meanwhile
        self.dev_evals = 0  # example scorings of the search (dev, and train where a searcher scores it)
        self._start = self.usage()
        self._t0 = time.perf_counter()

    def usage(self) -> Usage:
        """Everything the target and the attached models have spent (a fresh copy)."""
        total = self.backend.usage.copy()
        for b in self._others:
            total = total + b.usage
        return total

    def attach(self, backend) -> None:
        """Count another backend's cost (calls, tokens, dollars) here from now on: a
        searcher's proposer model, say."""
        if backend is self.backend or any(b is backend for b in self._others):
            return
        self._start = self._start + backend.usage
        self._others.append(backend)

    @property
    def cost(self) -> Usage:
        return self.usage() - self._start - self.outside_cost

    def unpriced(self) -> bool:
        return any(b.price is None for b in (self.backend, *self._others))

    def check_prices(self) -> None:
        """A dollar budget needs every model's price: refused before the first call."""
        if self.budget.max_dollars is not None and self.unpriced():
            raise PromptSearchError(
                "A dollar budget needs every model's price, and a model in this search has "
                "none; add it to a PROMPTSEARCH_PRICES file (see the README) or drop --max-dollars."
            )

    def check(
        self,
        n_examples: int = 0,
        requests: Callable[[], Sequence] | None = None,
        backend=None,
        soft_prompt=None,
        cut: bool = False,
    ) -> None:
        """Raise BudgetExhausted if a scoring of `n_examples` (or a slice of one, or a
        searcher's own model calls) may not start. Answers in the cache are free: the
        requests (`requests()` builds them) are looked up, and only those the model would
        answer count. A call budget is never passed: requests that would pass it do not
        start (`cut`: the caller cuts them to the calls left itself, as `ask` does). Time,
        token and dollar budgets are checked before each slice, so one slice (at most
        `chunk_size` example scorings) is the most a search can go past them."""
        b = self.budget
        self.check_prices()
        if b.max_evals is not None and n_examples and self.dev_evals + n_examples > b.max_evals:
            raise BudgetExhausted(f"evaluation budget of {b.max_evals} example scorings reached")
        cost = self.cost
        need: list[int] = []

        def needed() -> int:  # how many of the requests the model would have to answer (looked up once)
            if not need:
                need.append(
                    len(missing(backend or self.backend, requests(), soft_prompt)) if requests is not None else 1
                )
            return need[0]

        over_calls = b.max_calls is not None and (
            cost.calls >= b.max_calls if cut or requests is None else cost.calls + needed() > b.max_calls
        )
        reached = (
            f"call budget of {b.max_calls} model calls reached ({cost.calls} used)"
            if over_calls
            else f"time budget of {b.max_seconds:.0f} s reached"
            if b.max_seconds is not None and time.perf_counter() - self._t0 >= b.max_seconds
            else f"token budget of {b.max_tokens:,} tokens reached ({cost.tokens:,} used)"
            if b.max_tokens is not None and cost.tokens >= b.max_tokens
            else f"dollar budget of ${b.max_dollars:.4f} reached (${cost.dollars:.4f} spent)"
            if b.max_dollars is not None and cost.dollars >= b.max_dollars
            else ""
        )
        if reached and (requests is None or needed() > 0):
            raise BudgetExhausted(reached)


def missing(backend, requests: Sequence, soft_prompt=None) -> list[int]:
    """Indices of requests the model would have to answer (not in the cache)."""
    return backend.missing(requests, soft_prompt)
