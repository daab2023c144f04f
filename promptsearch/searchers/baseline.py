"""Plain baselines, scored the same way as any searched prompt: the empty prompt, the
task's manual instruction(s), and k-shot demos drawn from the train split."""

from __future__ import annotations

import random
from dataclasses import dataclass

from promptsearch.candidates import Candidate
from promptsearch.errors import BudgetExhausted
from promptsearch.evaluation.evaluator import Evaluator
from promptsearch.evaluation.harness import _draw
from promptsearch.searchers.base import Outcome, SearchContext, Searcher, option
from promptsearch.tasks.base import Task


def pick_demos(task: Task, k: int, seed: int, balanced: bool = True) -> tuple[str, ...]:
    """k train examples, class-balanced round-robin where the task has labels, then shuffled."""
    if k <= 0 or not task.train:
        return ()
    return tuple(e.id for e in _draw(task.train, k, random.Random(seed), balanced, task))


def baseline_candidates(
    task: Task, shots: int = 4, seed: int = 0, balanced: bool = True, max_manual: int = 5
) -> list[Candidate]:
    cands = [Candidate(name="empty", origin="baseline")]
    for i, text in enumerate(task.instructions[:max_manual], 1):
        cands.append(Candidate(instruction=text, name=f"manual-{i}", origin="baseline"))
    if shots > 0 and task.train:
        demos = pick_demos(task, shots, seed, balanced)
        cands.append(Candidate(demos=demos, name=f"{len(demos)}-shot", origin="baseline"))
    return cands


class BaselineSearcher(Searcher):
    """The empty prompt, the task's manual instructions and a k-shot prompt, scored on dev."""

    name = "baseline"

    @dataclass
    class Config:
        shots: int = option(4, "demos in the k-shot baseline (0 to leave it out)", min=0)
        balanced: bool = option(True, "draw k-shot demos class-balanced")
        max_manual: int = option(5, "how many of the task's manual instructions to try", min=0)

    def search(self, task: Task, evaluator: Evaluator, context: SearchContext) -> Outcome:
        seed = context.seed
        cands = baseline_candidates(task, self.config.shots, seed, self.config.balanced, self.config.max_manual)
        stopped = ""
        for cand in cands:
            try:
                evaluator.score(cand, task.dev)
            except BudgetExhausted as e:
                stopped = str(e)
                break
        scored = evaluator.history
        if not scored:
            raise BudgetExhausted(stopped or "no candidate could be scored within the budget")
        best = max(scored, key=lambda r: r.selection)  # first wins ties: the simplest prompt
        return Outcome(best.candidate, best.mean, stopped)
