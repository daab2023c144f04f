"""Racing by successive halving, shared by the searchers that rank many candidates on dev
(APE's instructions, the demos searcher's demo sets).

Every candidate is scored on the first `start` dev examples, the best 1/`eta` go on to twice
as many, up to the whole dev split. Scores already earned are kept, so a candidate is never
scored twice on one example, and weak candidates stop costing evaluations early.
"""

from __future__ import annotations

import math

from promptsearch.candidates import Candidate
from promptsearch.evaluation.evaluator import Evaluator
from promptsearch.tasks.base import Example


class Race:
    def __init__(self, start: int, eta: int):
        self.start, self.eta = start, eta
        self.scores: dict[str, dict[str, float]] = {}  # candidate key -> {example id: score}
        self.cands: dict[str, Candidate] = {}

    def run(self, cands: list[Candidate], dev: list[Example], evaluator: Evaluator) -> list[Candidate]:
        """Race `cands` on `dev`. Returns every candidate ranked best first: by how far it got
        in the race, then by its score on the slice it got to."""
        alive = list(cands)
        reached: dict[str, tuple[int, float]] = {}
        for c in alive:
            self.cands.setdefault(c.key(), c)
        n = min(self.start, len(dev))
        while True:
            for c in alive:
                self.score_upto(c, dev[:n], evaluator)
                reached[c.key()] = (n, mean(self.scores[c.key()], dev[:n]))
            alive.sort(key=lambda c: -reached[c.key()][1])
            if n >= len(dev):
                break
            alive = alive[: max(1, math.ceil(len(alive) / self.eta))]
            # the last one standing is scored on the whole split, so its score is comparable
            n = len(dev) if len(alive) == 1 else min(len(dev), n * 2)
        return sorted(cands, key=lambda c: (-reached[c.key()][0], -reached[c.key()][1]))

    def score_upto(self, cand: Candidate, examples: list[Example], evaluator: Evaluator) -> None:
        have = self.scores.get(cand.key(), {})
        todo = [e for e in examples if e.id not in have]
        if todo:
            res = evaluator.score(cand, todo)
            # recorded only once scored: a budget stop leaves no unscored candidate behind
            self.scores.setdefault(cand.key(), {}).update(zip(res.example_ids, res.scores))

    def best(self) -> tuple[Candidate, float] | None:
        """The candidate scored on the most dev examples, best mean among those."""
        if not self.scores:
            return None
        key = max(self.scores, key=lambda k: (len(self.scores[k]), mean(self.scores[k])))
        return self.cands[key], mean(self.scores[key])


def mean(scores: dict[str, float], examples: list[Example] | None = None) -> float:
    vals = [scores[e.id] for e in examples] if examples is not None else list(scores.values())
    return sum(vals) / len(vals) if vals else float("-inf")
