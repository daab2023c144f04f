"""APE (Zhou et al. 2022): induce instructions from demos, race them on dev, resample the best.

1. Induction: for each of `subsamples` random demo sets from train, a proposer model
   completes the forward template `samples_per_subsample` times at `temperature`.
2. Cleaning: first sentence, quotes and prefixes stripped; empty, overlong and demo-copying
   candidates and duplicates dropped.
3. Racing (successive halving): every candidate is scored on the first `race_start` dev
   examples, the best 1/`eta` go on to twice as many, and so on up to the whole dev split.
   Scores already earned are kept, so a survivor is never scored twice on one example.
4. Resampling (iterative Monte Carlo): for `rounds` rounds, the top `top_fraction` are
   reworded `variations` times each; the new candidates race against the survivors.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from promptsearch.backends.base import GenRequest
from promptsearch.candidates import Candidate
from promptsearch.errors import BudgetExhausted, PromptSearchError
from promptsearch.evaluation.evaluator import Evaluator
from promptsearch.evaluation.render import answer_text
from promptsearch.searchers.base import Outcome, SearchContext, Searcher, option, until_budget
from promptsearch.searchers.proposing import (
    chat_formatter,
    chat_option,
    clean_instruction,
    dedup_key,
    max_chars_option,
    max_tokens_option,
    proposer_option,
    rejection,
    resolve_proposer,
    temperature_option,
)
from promptsearch.searchers.racing import Race
from promptsearch.searchers.templates import DEMO, INDUCE, RESAMPLE, MetaPrompt
from promptsearch.tasks.base import Task


class APESearcher(Searcher):
    """Instruction induction, racing on dev, and iterative Monte Carlo resampling."""

    name = "ape"
    needs = "a generating proposer (default: the target model)"

    @dataclass
    class Config:
        proposer: str = proposer_option()
        subsamples: int = option(5, "random demo sets shown to the proposer", min=1)
        demos: int = option(5, "demos per set", min=1)
        samples_per_subsample: int = option(4, "instructions sampled per demo set", min=1)
        temperature: float = temperature_option(0.9)
        max_tokens: int = max_tokens_option(40)
        max_chars: int = max_chars_option()
        race_start: int = option(8, "dev examples in the first racing rung", min=1)
        eta: int = option(2, "keep the best 1/eta at each rung", min=2)
        rounds: int = option(2, "resampling rounds", min=0)
        top_fraction: float = option(0.25, "share of candidates resampled each round", above=0, max=1)
        variations: int = option(2, "rewordings per resampled candidate", min=1)
        chat: str = chat_option()

    def search(self, task: Task, evaluator: Evaluator, context: SearchContext) -> Outcome:
        seed = context.seed
        cfg = self.config
        rng = random.Random(seed)
        proposer = resolve_proposer(cfg.proposer, evaluator)
        self._chat = chat_formatter(proposer, cfg.chat)
        self._seen: set[str] = set()
        self._shown: set[str] = set()  # demo inputs the proposer saw (lower-cased)
        self._dropped: dict[str, int] = {}
        self._race = Race(cfg.race_start, cfg.eta, evaluator.race_level)
        self._cut = ""
        stopped = ""
        notes = {
            "templates": [INDUCE.record(), RESAMPLE.record()],
            "proposer": proposer.identity(),
            "chat_form": self._chat is not None,
            "rounds": [],
        }
        with until_budget() as stop:
            evaluator.say(
                f"APE: inducing {cfg.subsamples * cfg.samples_per_subsample} instructions "
                f"from {cfg.subsamples} demo sets ({proposer.model_id})"
            )
            texts = self._induce(task, proposer, rng, seed, evaluator)
            if not texts and self._cut:
                raise BudgetExhausted(self._cut)
            pool = self._clean(texts, task, origin="induce")
            notes["rounds"].append({"round": 0, "proposed": len(pool), "dropped": dict(self._dropped)})
            if not pool and self._cut:
                raise BudgetExhausted(self._cut)
            if not pool:
                why = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in self._dropped.items())
                raise PromptSearchError(
                    f"APE: none of the {len(texts)} instructions the proposer wrote was usable ({why}); "
                    "try a stronger --proposer or more samples (-o samples_per_subsample=8)."
                )
            evaluator.say(f"APE: racing {len(pool)} candidates on dev (successive halving)")
            ranked = self._race.run(pool, task.dev, evaluator)
            for r in range(1, cfg.rounds + 1):
                k = max(1, math.ceil(len(ranked) * cfg.top_fraction))
                parents = ranked[:k]  # the current best, best first
                evaluator.say(f"APE round {r}/{cfg.rounds}: rewording the top {len(parents)}")
                kids = self._clean(self._resample(parents, proposer, seed, r, evaluator), task, origin=f"resample-r{r}")
                notes["rounds"].append({"round": r, "parents": [c.name for c in parents], "proposed": len(kids)})
                if not kids:
                    continue
                evaluator.say(f"APE round {r}/{cfg.rounds}: racing {len(kids)} new against {len(parents)} survivors")
                ranked = self._race.run(parents + kids, task.dev, evaluator)
        stopped = stop.reason or stopped
        stopped = stopped or self._cut
        found = self._race.best()
        if found is None:
            raise BudgetExhausted(stopped or "no candidate was scored")
        notes["eliminated"] = self._race.eliminated
        return Outcome(*found, stopped, notes)

    # --- proposing -----------------------------------------------------------------------
    def _fill(self, meta: MetaPrompt, **slots: str) -> str:
        if self._chat is not None:
            return self._chat(meta.chat.format(**slots))
        return meta.text.format(**slots)

    def _induce(self, task: Task, proposer, rng: random.Random, seed: int, evaluator: Evaluator) -> list[str]:
        cfg = self.config
        reqs = []
        for _ in range(cfg.subsamples):
            demos = rng.sample(task.train, min(cfg.demos, len(task.train)))
            self._shown.update(d.input.strip().lower() for d in demos)
            block = "\n\n".join(DEMO.format(input=d.input, output=answer_text(task, d)) for d in demos)
            prompt = self._fill(INDUCE, demos=block)
            reqs += [
                GenRequest(prompt, cfg.max_tokens, cfg.temperature, 1.0, ("\n",), sample_index=j, seed=seed)
                for j in range(cfg.samples_per_subsample)
            ]
        return self._ask(evaluator, proposer, reqs)

    def _ask(self, evaluator: Evaluator, proposer, reqs: list[GenRequest]) -> list[str]:
        """Proposer calls through the evaluator, which budgets them; a budget that cuts the
        list short ends the search once what came back has been raced."""
        got = [r.text for r in evaluator.ask(proposer, reqs)]
        if len(got) < len(reqs):
            self._cut = f"call budget of {evaluator.budget.max_calls} model calls reached while proposing"
        return got

    def _resample(self, parents: list[Candidate], proposer, seed: int, round_: int, evaluator: Evaluator) -> list[str]:
        cfg = self.config
        reqs = [
            GenRequest(
                self._fill(RESAMPLE, instruction=p.instruction),
                cfg.max_tokens,
                cfg.temperature,
                1.0,
                ("\n",),
                sample_index=j,
                seed=seed * 1000 + round_,
            )
            for p in parents
            for j in range(cfg.variations)
        ]
        return self._ask(evaluator, proposer, reqs)

    def _clean(self, texts: list[str], task: Task, origin: str) -> list[Candidate]:
        out = []
        # A copied demo is a shown demo input of three or more words, or "Input:"/"Output:"
        # lines. Short inputs (single words, numbers) are not checked: an instruction for a
        # word task may well name a common word without copying anything.
        copied = [d for d in self._shown if len(d.split()) >= 3]
        drop = self._dropped
        for raw in texts:
            text = clean_instruction(raw, induced=origin == "induce" and self._chat is None)
            low = text.lower()
            copies = any(d in low for d in copied) or re.search(r"\b(input|output)\s*:", low)
            reason = rejection(text, set(), self.config.max_chars) or ("copies_a_demo" if copies else "")
            key = dedup_key(text)
            if not reason and key in self._seen:
                reason = "duplicate"
            if reason:
                drop[reason] = drop.get(reason, 0) + 1
                continue
            self._seen.add(key)
            out.append(Candidate(instruction=text, name=f"{origin}-{len(out) + 1:02d}", origin=f"ape:{origin}"))
        return out
