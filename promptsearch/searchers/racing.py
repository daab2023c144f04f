"""Racing by successive halving, shared by the searchers that rank many candidates on dev
(APE's instructions, the demos searcher's demo sets).

Every candidate is scored on the first `start` dev examples, the best 1/`eta` go on to twice
as many, up to the whole dev split. Scores already earned are kept, so a candidate is never
scored twice on one example, and weak candidates stop costing evaluations early. Scores are
the evaluator's selection scores (the task's metric, or the gold-label probability).

With `level` (the run's `--race-level`), a candidate ranked below the cut is dropped only when
a paired comparison with the leader on the examples both were scored on says it is behind
(the upper end of the paired bootstrap interval at `level` is below zero); those within noise
of the leader go on too, up to as many again as the cut keeps (beyond that the best-ranked of
them). Every elimination and its evidence is in `eliminated`.
"""

from __future__ import annotations

import math

from promptsearch.candidates import Candidate
from promptsearch.evaluation.evaluator import Evaluator
from promptsearch.tasks.base import Example


class Race:
    def __init__(self, start: int, eta: int, level: float | None = None):
        self.start, self.eta, self.level = start, eta, level
        self.scores: dict[str, dict[str, float]] = {}  # candidate key -> {example id: score}
        self.cands: dict[str, Candidate] = {}
        self.eliminated: list[dict] = []  # {name, n, mean, leader, why, diff, ci_low, ci_high}

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
            alive = self._cut(alive, dev[:n])
            # the last one standing is scored on the whole split, so its score is comparable
            n = len(dev) if len(alive) == 1 else min(len(dev), n * 2)
        return sorted(cands, key=lambda c: (-reached[c.key()][0], -reached[c.key()][1]))

    def _cut(self, ranked: list[Candidate], examples: list[Example]) -> list[Candidate]:
        """Who goes on from a rung (`ranked`: best first, all scored on `examples`)."""
        quota = max(1, math.ceil(len(ranked) / self.eta))
        leader, keep, rest = ranked[0], ranked[:quota], ranked[quota:]
        if self.level is None:
            for c in rest:
                self._drop(c, leader, examples, "rank", None)
            return keep
        from promptsearch.evaluation.stats import paired_bootstrap

        lead = [self.scores[leader.key()][e.id] for e in examples]
        room = quota  # within noise: up to as many again as the cut keeps
        for c in rest:
            d = paired_bootstrap([self.scores[c.key()][e.id] for e in examples], lead, level=self.level)
            if d.ci_high < 0:
                self._drop(c, leader, examples, "behind", d)
            elif room:
                room -= 1
                keep.append(c)
            else:
                self._drop(c, leader, examples, "within noise, no room", d)
        return keep

    def _drop(self, c: Candidate, leader: Candidate, examples: list[Example], why: str, d) -> None:
        entry = {"name": c.name, "n": len(examples), "mean": round(mean(self.scores[c.key()], examples), 4)}
        entry.update(leader=leader.name, why=why)
        if d is not None:
            entry.update(diff=round(d.diff, 4), ci_low=round(d.ci_low, 4), ci_high=round(d.ci_high, 4))
        self.eliminated.append(entry)

    def score_upto(self, cand: Candidate, examples: list[Example], evaluator: Evaluator) -> None:
        have = self.scores.get(cand.key(), {})
        todo = [e for e in examples if e.id not in have]
        if todo:
            res = evaluator.score(cand, todo)
            # recorded only once scored: a budget stop leaves no unscored candidate behind
            self.scores.setdefault(cand.key(), {}).update(zip(res.example_ids, res.selection_scores))

    def best(self) -> tuple[Candidate, float] | None:
        """The candidate scored on the most dev examples, best mean among those."""
        if not self.scores:
            return None
        key = max(self.scores, key=lambda k: (len(self.scores[k]), mean(self.scores[k])))
        return self.cands[key], mean(self.scores[key])


def mean(scores: dict[str, float], examples: list[Example] | None = None) -> float:
    vals = [scores[e.id] for e in examples] if examples is not None else list(scores.values())
    return sum(vals) / len(vals) if vals else float("-inf")
