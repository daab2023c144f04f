"""OPRO (Yang et al. 2023, "Large Language Models as Optimizers"): the proposer is shown the
trajectory so far, the best `keep` instructions with their scores in ascending order, and a
few train exemplars, and writes `per_step` new instructions at `temperature` per step.

- Start: the task's manual instructions (the empty instruction where it has none).
- Each new instruction: first sentence kept; empty, over-long and duplicate ones dropped;
  scored on a fixed dev subsample (`dev_sample` examples), the trajectory's score.
- End (steps done or budget reached): the `final_top` best on the subsample are scored on
  the whole dev split and the best there wins (while the budget lasts; else the subsample's best).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from promptsearch.candidates import Candidate
from promptsearch.errors import BudgetExhausted
from promptsearch.evaluation.evaluator import Evaluator
from promptsearch.evaluation.render import answer_text
from promptsearch.searchers.base import Outcome, SearchContext, Searcher, option, until_budget
from promptsearch.searchers.proposing import (
    Proposer,
    chat_option,
    clean_instruction,
    dedup_key,
    max_chars_option,
    max_tokens_option,
    proposer_option,
    rejection,
    temperature_option,
)
from promptsearch.searchers.templates import OPRO_ENTRY, OPRO_EXEMPLAR, OPRO_META
from promptsearch.tasks.base import Task


def trajectory(scored: list[tuple[Candidate, float]], keep: int) -> list[tuple[Candidate, float]]:
    """The best `keep` (instruction, score) pairs, in ascending score order (the best last,
    nearest to where the proposer writes: the paper's order)."""
    return sorted(sorted(scored, key=lambda cs: -cs[1])[:keep], key=lambda cs: cs[1])


def extract(text: str) -> str:
    """The instruction between <INS> and </INS> (either tag may be missing), first sentence."""
    t = text.split("<INS>", 1)[-1].split("</INS>", 1)[0]
    return clean_instruction(t)


class OPROSearcher(Searcher):
    """A proposer reads the scored trajectory and writes better instructions, step by step."""

    name = "opro"
    needs = "a generating proposer (default: the target model)"

    @dataclass
    class Config:
        proposer: str = proposer_option()
        steps: int = option(20, "optimisation steps", min=1)
        per_step: int = option(8, "instructions sampled per step", min=1)
        keep: int = option(20, "best instructions shown in the meta-prompt", min=1)
        exemplars: int = option(3, "train exemplars shown in the meta-prompt", min=0)
        temperature: float = temperature_option(1.0)
        max_tokens: int = max_tokens_option(50)
        max_chars: int = max_chars_option()
        dev_sample: int = option(32, "dev examples each instruction is scored on during the search", min=1)
        final_top: int = option(3, "best instructions re-scored on the whole dev split at the end", min=1)
        chat: str = chat_option()

    def search(self, task: Task, evaluator: Evaluator, context: SearchContext) -> Outcome:
        seed = context.seed
        cfg = self.config
        rng = random.Random(f"opro:{seed}")
        prop = Proposer(cfg.proposer, evaluator, cfg.chat)
        sample = rng.sample(task.dev, min(cfg.dev_sample, len(task.dev)))
        scored: list[tuple[Candidate, float]] = []
        seen: set[str] = set()
        notes = {
            "templates": [OPRO_META.record()],
            "proposer": prop.backend.identity(),
            "steps": [],
            "dev_sample": len(sample),
        }
        stopped = ""

        def score(cands: list[Candidate]) -> None:
            for c, r in zip(cands, evaluator.score_many(cands, sample)):
                scored.append((c, r.selection))

        with until_budget() as stop:
            starts = [
                Candidate(instruction=t, name=f"manual-{i}", origin="opro:start")
                for i, t in enumerate(task.instructions or [""], 1)
            ]
            seen.update(dedup_key(c.instruction) for c in starts)
            score(starts)
            for step in range(1, cfg.steps + 1):
                shown = trajectory(scored, cfg.keep)
                meta = prop.fill(
                    OPRO_META,
                    trajectory="\n\n".join(
                        OPRO_ENTRY.format(instruction=c.instruction, score=round(100 * s)) for c, s in shown
                    ),
                    exemplars="\n\n".join(
                        OPRO_EXEMPLAR.format(input=e.input, output=answer_text(task, e))
                        for e in rng.sample(task.train, min(cfg.exemplars, len(task.train)))
                    ),
                )
                texts = prop.write(
                    [meta], cfg.per_step, cfg.max_tokens, cfg.temperature, seed * 1000 + step, stop=("</INS>", "\n")
                )
                kids, dropped = [], {"empty": 0, "too_long": 0, "duplicate": 0}
                for raw in texts:
                    text = extract(raw)
                    why = rejection(text, seen, cfg.max_chars)
                    if why:
                        dropped[why] += 1
                        continue
                    seen.add(dedup_key(text))
                    kids.append(
                        Candidate(instruction=text, name=f"opro-s{step:02d}-{len(kids) + 1}", origin=f"opro:step{step}")
                    )
                notes["steps"].append({"step": step, "shown": len(shown), "proposed": len(kids), "dropped": dropped})
                if kids:
                    score(kids)
                best = max(s for _, s in scored)
                evaluator.say(
                    f"OPRO step {step}/{cfg.steps}: {len(kids)} new, best {best:.3f} on {len(sample)} dev "
                    f"so far, {evaluator.cost.calls} calls"
                )
                if prop.cut:
                    stopped = prop.cut
                    break
        stopped = stop.reason or stopped
        if not scored:
            raise BudgetExhausted(stopped or "no instruction was scored")
        best, best_score = self._final(scored, task, evaluator, len(sample))
        notes["final"] = {"candidate": best.name, "dev": best_score}
        return Outcome(best, best_score, stopped, notes)

    def _final(self, scored, task: Task, evaluator: Evaluator, n_sample: int) -> tuple[Candidate, float]:
        """The best of the top `final_top` on the whole dev split (the subsample's best when it
        is the whole split or the budget is spent)."""
        top = sorted(scored, key=lambda cs: -cs[1])[: self.config.final_top]
        if n_sample >= len(task.dev):
            return top[0]
        full: list[tuple[Candidate, float]] = []
        try:
            for c, _ in top:
                full.append((c, evaluator.score(c, task.dev).selection))
        except BudgetExhausted:
            if not full:
                return top[0]
        return max(full, key=lambda cs: cs[1])
