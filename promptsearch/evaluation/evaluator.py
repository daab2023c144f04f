"""The evaluator: the only place prompts are scored. Every searcher goes through it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from promptsearch.backends.base import GenRequest, LoglikRequest
from promptsearch.budget import Budget
from promptsearch.candidates import Candidate
from promptsearch.errors import BudgetExhausted, PromptSearchError
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
    label_logprobs: list[dict[str, float]] | None = None  # classification only
    step: int = -1  # order among this evaluator's dev scorings

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
    harness: str = "zero-shot"

    def __post_init__(self):
        self.metric_name, self._scorer = resolve_scorer(self.scorer or self.task.metric)
        self._by_id = {e.id: e for e in self.task.train}
        self._start = self._usage().copy()
        self._t0 = time.perf_counter()
        self.dev_evals = 0
        self.history: list[EvalResult] = []  # every dev scoring, in order

    def _usage(self) -> Usage:
        return getattr(self.backend, "usage", Usage())

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

    def remaining_evals(self) -> float:
        return math.inf if self.budget.max_evals is None else self.budget.max_evals - self.dev_evals

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
        label = f"{split} · {cand.name or cand.describe()[:30]}"
        for s in range(0, len(examples), self.chunk_size):
            chunk = examples[s : s + self.chunk_size]
            if self.task.labels:
                p, l = self._classify(cand, chunk, demos)
                preds += p
                lps += l
            else:
                preds += self._generate(cand, chunk, demos)
            if self.progress:
                self.progress(label, len(preds), len(examples))
        scores = [self._apply_scorer(p, ex) for p, ex in zip(preds, examples)]
        mean, se = mean_se(scores)
        result = EvalResult(cand, split, mean, se, scores, preds, [e.id for e in examples],
                            self._usage() - before, lps if self.task.labels else None)
        if split == "dev":
            self.dev_evals += len(examples)
            result.step = len(self.history)
            self.history.append(result)
        return result

    def _classify(self, cand: Candidate, chunk: list[Example], demos: list[Example]):
        labels = list(self.task.labels)
        reqs = []
        for ex in chunk:
            ctx = render(self.task, cand, ex, demos)
            reqs += [LoglikRequest(ctx, continuation(ctx, self.task.labels[lab])) for lab in labels]
        if not self.backend.can_loglikelihood:
            raise PromptSearchError(f"Model '{self.backend.model_id}' cannot score log-likelihoods; classification needs one that can.")
        kwargs = {"soft_prompt": cand.soft_prompt} if cand.soft_prompt is not None else {}
        res = self.backend.loglikelihood(reqs, **kwargs)
        preds, lps = [], []
        for i in range(len(chunk)):
            row = {lab: res[i * len(labels) + j].logprob for j, lab in enumerate(labels)}
            preds.append(max(labels, key=row.__getitem__))
            lps.append(row)
        return preds, lps

    def _generate(self, cand: Candidate, chunk: list[Example], demos: list[Example]) -> list[str]:
        if cand.soft_prompt is not None:
            raise PromptSearchError("Soft prompts are scored by log-likelihood; this task needs generation.")
        reqs = [GenRequest(render(self.task, cand, ex, demos), max_new_tokens=self.max_new_tokens) for ex in chunk]
        return [r.text.strip() for r in self.backend.generate(reqs)]

    def _apply_scorer(self, pred: str, ex: Example) -> float:
        try:
            value = float(self._scorer(pred, ex))
        except Exception as e:  # a user's scorer: report, don't crash with a traceback
            raise PromptSearchError(f"Scorer '{self.metric_name}' failed on example {ex.id}: {type(e).__name__}: {e}") from None
        if math.isnan(value):
            raise PromptSearchError(f"Scorer '{self.metric_name}' returned NaN on example {ex.id}.")
        return value
