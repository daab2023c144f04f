"""Demo search: which train examples are shown in context, and in what order.

- `select=random` (default): `sets` random sets of `shots` train demos (class-balanced or
  not, each in a shuffled order) and the fixed k-shot baseline set race on dev by
  successive halving; the dev-best set wins (DSPy's BootstrapFewShotWithRandomSearch is
  the peer: random demo sets scored on a validation split).
- `select=knn`: per input, the `shots` train examples nearest to it by the target model's
  own mean-pooled hidden states, the nearest last (KATE, Liu et al. 2022). That candidate
  races with the random sets, so the result is whichever is better on dev
  (`-o sets=0` scores kNN alone).
- The instruction shown above the demos: the task's own (`instruction=task`, default),
  none, or the best discrete prompt stored for this task and model (`instruction=best`;
  the record names the run it came from).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from promptsearch.candidates import Candidate
from promptsearch.errors import BudgetExhausted, PromptSearchError
from promptsearch.evaluation.evaluator import Evaluator
from promptsearch.evaluation.harness import _draw
from promptsearch.searchers.base import Outcome, SearchContext, Searcher, option, until_budget
from promptsearch.searchers.baseline import pick_demos
from promptsearch.searchers.racing import Race
from promptsearch.searchers.stored import best_stored_prompt
from promptsearch.tasks.base import Task


class DemoSearcher(Searcher):
    """Random demo sets (or kNN demos per input) raced on dev."""

    name = "demos"
    method_options = ("select", "instruction")

    @dataclass
    class Config:
        shots: int = option(4, "demos shown per input", min=1)
        sets: int = option(16, "random demo sets raced besides the k-shot baseline set", min=0)
        balanced: bool = option(True, "draw random sets class-balanced")
        select: str = option(
            "random",
            "random sets, or knn: the nearest train inputs per input "
            "(target-model embeddings) raced against the random sets",
            choices=("random", "knn"),
        )
        instruction: str = option(
            "task",
            "instruction above the demos: the task's, none, or best "
            "(the best discrete prompt stored for this task and model)",
            choices=("task", "none", "best"),
        )
        race_start: int = option(8, "dev examples in the first racing rung", min=1)
        eta: int = option(2, "keep the best 1/eta at each rung", min=2)

    def search(self, task: Task, evaluator: Evaluator, context: SearchContext) -> Outcome:
        seed = context.seed
        cfg = self.config
        k = min(cfg.shots, len(task.train))
        if k < 1:
            raise PromptSearchError(f"The demos searcher needs train examples; task '{task.name}' has none.")
        text, source = self._instruction(task, evaluator, context)
        notes = {"instruction": text, "instruction_from": source, "shots": k, "select": cfg.select}
        cands = self.candidates(task, k, seed, text)
        notes["candidates"] = len(cands)
        race = Race(cfg.race_start, cfg.eta, evaluator.race_level)
        stopped = ""
        evaluator.say(f"demos: racing {len(cands)} candidates of {k} demos on {len(task.dev)} dev examples")
        with until_budget() as stop:
            race.run(cands, task.dev, evaluator)
        stopped = stop.reason or stopped
        found = race.best()
        if found is None:
            raise BudgetExhausted(stopped or "no demo set was scored")
        notes["eliminated"] = race.eliminated
        return Outcome(*found, stopped, notes)

    def candidates(self, task: Task, k: int, seed: int, text: str) -> list[Candidate]:
        """The kNN candidate (select=knn), the k-shot baseline set, then `sets` random sets;
        duplicates (same demos in the same order) dropped."""
        cfg = self.config
        rng = random.Random(f"demos:{seed}")
        out: list[Candidate] = []
        if cfg.select == "knn":
            out.append(Candidate(instruction=text, knn=k, name=f"knn-{k}", origin="demos:knn"))
        out.append(
            Candidate(
                instruction=text,
                demos=pick_demos(task, k, seed, cfg.balanced),
                name=f"{k}-shot",
                origin="demos:baseline",
            )
        )
        seen = {c.key() for c in out}
        tries = 0
        while len(out) < cfg.sets + 1 + (cfg.select == "knn") and tries < 20 * (cfg.sets + 1):
            tries += 1
            ids = tuple(e.id for e in _draw(task.train, k, rng, cfg.balanced, task))  # shuffled order
            c = Candidate(instruction=text, demos=ids, name=f"demos-{len(out):02d}", origin="demos:random")
            if c.key() not in seen:
                seen.add(c.key())
                out.append(c)
        return out

    def _instruction(self, task: Task, evaluator: Evaluator, context: SearchContext) -> tuple[str, str | dict]:
        mode = self.config.instruction
        if mode == "none":
            return "", "none"
        if mode == "task":
            return (task.instructions[0] if task.instructions else ""), "task"
        model = evaluator.backend.model_id
        return best_stored_prompt(
            task, context.runs, model, "instruction=best", triggers=False, task_hash=context.task_hash
        )
