"""Search budgets, enforced by the evaluator on every dev scoring."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Budget:
    max_evals: int | None = None  # example-level scorings on the dev split
    max_calls: int | None = None  # model calls (cache hits are free)
    max_seconds: float | None = None  # wall-clock seconds of search

    def to_dict(self) -> dict:
        return dict(self.__dict__)
