"""The evaluator: the only place prompts are scored. Every searcher goes through it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from promptsearch.backends.base import GenRequest, LoglikRequest, Prompt
from promptsearch.budget import Budget
from promptsearch.candidates import Candidate
from promptsearch.errors import BudgetExhausted, PromptSearchError
from promptsearch.evaluation.harness import ANSWER_PROMPT, Harness, extract, parse_harness, vote
from promptsearch.evaluation.render import continuation, render
from promptsearch.evaluation.scorers import Scorer, resolve_scorer
from promptsearch.evaluation.stats import mean_se
from promptsearch.cost import Usage
from promptsearch.tasks.base import Example, Task

Progress = Callable[[str, int, int], None]  # (label, done, total)


@dataclass
class EvalResult:
    candidate: Candidate
    split: str
    mean: float
    stderr: float
    scores: list[float]
    predictions: list[str]
    example_ids: list[str]
    cost: Usage
    label_logprobs: list[dict[str, float]] | None = None  # classification by log-likelihood only
    step: int = -1  # order among this evaluator's dev scorings
    extras: dict = field(default_factory=dict)  # harness figures: first-sample score, maj@n, unparsed

    @property
    def n(self) -> int:
        return len(self.scores)


@dataclass
class Evaluator:
    task: Task
    backend: object  # a Backend, normally a CachedBackend
    scorer: str | Scorer | None = None  # default: the task's metric
    budget: Budget = field(default_factory=Budget)
    progress: Progress | None = None
    chunk_size: int = 64  # examples per backend call; the cache commits per call
    max_new_tokens: int = 32
    harness: Harness | str | None = None  # a Harness or a spec such as "fewshot:k=4+cot+sc:n=5"
    phase: Callable[[str], None] | None = None  # searchers announce their phases through this

    def __post_init__(self):
        self.metric_name, self._scorer = resolve_scorer(self.scorer or self.task.metric)
        if not isinstance(self.harness, Harness):
            self.harness = parse_harness(self.harness)
        self._by_id = {e.id: e for e in self.task.train}
        self._others: list = []  # other backends whose cost counts here (an API proposer)
        self._start = self._usage().copy()
        self._t0 = time.perf_counter()
        self.dev_evals = 0
        self.history: list[EvalResult] = []  # every dev scoring, in order

    def say(self, message: str) -> None:
        if self.phase:
            self.phase(message)

    def _usage(self) -> Usage:
        total = getattr(self.backend, "usage", Usage()).copy()
        for b in self._others:
            total = total + b.usage
        return total

    def attach(self, backend) -> None:
        """Count another backend's cost (calls, tokens, dollars) in this evaluator's cost and
        budget from now on: a searcher's proposer model, say."""
        if backend is self.backend or any(b is backend for b in self._others) or not hasattr(backend, "usage"):
            return
        self._start = self._start + backend.usage
        self._others.append(backend)

    @property
    def cost(self) -> Usage:
        return self._usage() - self._start

    def demos(self, cand: Candidate) -> list[Example]:
        try:
            return [self._by_id[i] for i in cand.demos]
        except KeyError as e:
            raise PromptSearchError(f"Candidate '{cand.name}' uses demo id {e.args[0]!r}, which is not in the train split.") from None

    def check_budget(self, n_examples: int) -> None:
        b = self.budget
        if b.max_evals is not None and self.dev_evals + n_examples > b.max_evals:
            raise BudgetExhausted(f"evaluation budget of {b.max_evals} example scorings reached")
        if b.max_calls is not None and self.cost.calls >= b.max_calls:
            raise BudgetExhausted(f"call budget of {b.max_calls} model calls reached")
        if b.max_seconds is not None and time.perf_counter() - self._t0 >= b.max_seconds:
            raise BudgetExhausted(f"time budget of {b.max_seconds:.0f} s reached")
        cost = self.cost
        if b.max_tokens is not None and cost.tokens >= b.max_tokens:
            raise BudgetExhausted(f"token budget of {b.max_tokens:,} tokens reached ({cost.tokens:,} used)")
        if b.max_dollars is not None:
            if cost.unpriced_calls:
                raise PromptSearchError("A dollar budget needs every model's price, and one model used in this "
                                        "search has none; add it to a PROMPTSEARCH_PRICES file (see the README).")
            if cost.dollars >= b.max_dollars:
                raise BudgetExhausted(f"dollar budget of ${b.max_dollars:.4f} reached (${cost.dollars:.4f} spent)")

    def score(self, cand: Candidate, examples: Sequence[Example], split: str = "dev") -> EvalResult:
        """Score a candidate on examples. Dev scorings count against the budget and go
        into `history`; test scorings (the final report) do not."""
        examples = list(examples)
        if split == "dev":
            self.check_budget(len(examples))
        before = self._usage().copy()
        demos = self.demos(cand)
        overlap = set(cand.demos) & {e.id for e in examples}
        if overlap:
            raise PromptSearchError(
                f"Candidate '{cand.name}' shows example {sorted(overlap)[0]!r} as a demo while scoring it; "
                "demos come from the train split, so score dev or test."
            )
        preds: list[str] = []
        lps: list[dict[str, float]] = []
        firsts: list[str] = []
        stats: dict[str, int] = {}
        label = f"{split} · {cand.name or cand.describe()[:30]}"
        generates = self.harness.generates(self.task, self.backend.can_loglikelihood)
        for s in range(0, len(examples), self.chunk_size):
            chunk = examples[s : s + self.chunk_size]
            prompts = [render(self.task, cand, ex, self._demos_for(demos, ex)) for ex in chunk]
            if generates:
                p, f = self._generate(cand, chunk, prompts, stats)
                preds += p
                firsts += f
            else:
                p, l = self._classify(cand, prompts)
                preds += p
                lps += l
            if self.progress:
                self.progress(label, len(preds), len(examples))
        scores = [self._apply_scorer(p, ex) for p, ex in zip(preds, examples)]
        mean, se = mean_se(scores)
        extras: dict = {}
        if generates:
            extras = {"samples": self.harness.sc_n, **stats}
            if self.harness.sampling:
                first_scores = [self._apply_scorer(p, ex) for p, ex in zip(firsts, examples)]
                extras.update({"maj@n": mean, "first_sample": mean_se(first_scores)[0]})
        result = EvalResult(cand, split, mean, se, scores, preds, [e.id for e in examples],
                            self._usage() - before, lps or None, extras=extras)
        if split == "dev":
            self.dev_evals += len(examples)
            result.step = len(self.history)
            self.history.append(result)
        return result

    def _demos_for(self, cand_demos: list[Example], ex: Example) -> list[Example]:
        """The candidate's own demos, then the harness's few-shot demos for this example."""
        ids = {d.id for d in cand_demos}
        return cand_demos + [d for d in self.harness.demos(self.task, ex) if d.id not in ids]

    def _classify(self, cand: Candidate, prompts: list[Prompt]):
        labels = list(self.task.labels)
        reqs = [LoglikRequest(ctx, continuation(ctx, self.task.labels[lab])) for ctx in prompts for lab in labels]
        kwargs = {"soft_prompt": cand.soft_prompt} if cand.soft_prompt is not None else {}
        res = self.backend.loglikelihood(reqs, **kwargs)
        preds, lps = [], []
        for i in range(len(prompts)):
            row = {lab: res[i * len(labels) + j].logprob for j, lab in enumerate(labels)}
            preds.append(max(labels, key=row.__getitem__))
            lps.append(row)
        return preds, lps

    def _generate(self, cand: Candidate, chunk: list[Example], prompts: list[Prompt], stats: dict[str, int]):
        """Generate (with the CoT trigger, n samples), extract an answer from each sample,
        optionally ask "Therefore, the answer is" where extraction failed, and vote."""
        if cand.soft_prompt is not None:
            raise PromptSearchError("Soft prompts are scored by log-likelihood; this task or harness needs generation.")
        h, task = self.harness, self.task
        if h.cot:
            prompts = [_append(p, continuation(p, h.trigger)) for p in prompts]
        max_new = h.cot_tokens if h.cot else (8 if task.labels else self.max_new_tokens)
        # CoT text often opens with a blank line, so a blank line cannot end it; stop where the
        # model starts a new example instead (the template's lead, e.g. "\nReview:").
        lead = task.template.split("{input}")[0].strip()
        stop = (("\n" + lead,) if lead else ()) if h.cot else ("\n",)
        temp, top_p = (h.temperature, h.top_p) if h.sampling else (0.0, 1.0)
        reqs = [GenRequest(p, max_new, temp, top_p, stop, sample_index=i, seed=h.demo_seed)
                for p in prompts for i in range(h.sc_n)]
        texts = [r.text for r in self.backend.generate(reqs)]
        found = [extract(t, task, h.cot) for t in texts]
        if h.answer_call:
            redo = [i for i, (_, how) in enumerate(found) if how != "strict"]
            for i, ans in zip(redo, self._answer_call([_append(reqs[i].prompt, texts[i] + ANSWER_PROMPT) for i in redo])):
                found[i] = (ans, "answer_call") if ans is not None else (None, "unparsed")
        for _, how in found:
            stats[how] = stats.get(how, 0) + 1
        preds, firsts = [], []
        for k in range(len(chunk)):
            answers = [a for a, _ in found[k * h.sc_n : (k + 1) * h.sc_n]]
            winner = vote(answers)
            stats["unparsed_examples"] = stats.get("unparsed_examples", 0) + (winner is None)
            preds.append(winner or "")
            firsts.append(answers[0] or "")
        return preds, firsts

    def _answer_call(self, prompts: list[Prompt]) -> list[str | None]:
        """Second stage: after the reasoning, "Therefore, the answer is" and a short answer
        (label log-likelihoods where the task has labels and the model can score them)."""
        if not prompts:
            return []
        if self.task.labels and self.backend.can_loglikelihood:
            preds, _ = self._classify(Candidate(), prompts)
            return preds
        texts = [r.text for r in self.backend.generate([GenRequest(p, 16, stop=("\n",)) for p in prompts])]
        return [extract(t, self.task, cot=False)[0] for t in texts]

    def _apply_scorer(self, pred: str, ex: Example) -> float:
        try:
            value = float(self._scorer(pred, ex))
        except Exception as e:  # a user's scorer: report, don't crash with a traceback
            raise PromptSearchError(f"Scorer '{self.metric_name}' failed on example {ex.id}: {type(e).__name__}: {e}") from None
        if math.isnan(value):
            raise PromptSearchError(f"Scorer '{self.metric_name}' returned NaN on example {ex.id}.")
        return value


def _append(prompt: Prompt, text: str) -> Prompt:
    return prompt + text if isinstance(prompt, str) else (*prompt, text)
