"""The evaluator: the only place prompts are scored. Every searcher goes through it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from promptsearch.backends.base import Backend, FirstTokenRequest, GenRequest, GenResult, LoglikRequest, Prompt
from promptsearch.budget import Budget
from promptsearch.candidates import Candidate
from promptsearch.cost import Usage
from promptsearch.errors import PromptSearchError
from promptsearch.evaluation import calibration, first_token
from promptsearch.evaluation.harness import ANSWER_PROMPT, Harness, extract, parse_harness, vote
from promptsearch.evaluation.meter import Meter, missing
from promptsearch.evaluation.render import continuation, render, task_for
from promptsearch.evaluation.scorers import Scorer, resolve_scorer
from promptsearch.evaluation.stats import logsumexp, mean_se
from promptsearch.tasks.base import Example, Task, label_words
from promptsearch.text import shorten

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
    # classification by log-likelihood only; calibrated (and normalised over the labels) when the harness calibrates
    label_logprobs: list[dict[str, float]] | None = None
    golds: list[tuple[str, ...]] | None = None  # each example's gold labels, where label_logprobs are kept
    select_by: str = "accuracy"  # what `selection` means: the task's metric, or gold_prob
    step: int = -1  # order among this evaluator's dev scorings
    extras: dict = field(default_factory=dict)  # harness figures: first-sample score, maj@n, unparsed

    @property
    def gold_probs(self) -> list[float] | None:
        """Per example, the probability of its gold label(s) normalised over the labels (after
        calibration when the harness calibrates); None when answers were generated."""
        if not self.label_logprobs or not self.golds:
            return None
        return [gold_prob(lp, g) for lp, g in zip(self.label_logprobs, self.golds)]

    @property
    def selection_scores(self) -> list[float]:
        """Per example, what searchers rank by: the gold-label probability under
        `select_by=gold_prob` (where label scores exist), else the task's metric."""
        probs = self.gold_probs if self.select_by == "gold_prob" else None
        return probs if probs is not None else self.scores

    @property
    def selection(self) -> float:
        """The mean selection score (the task's metric: exactly `mean`)."""
        probs = self.gold_probs if self.select_by == "gold_prob" else None
        return sum(probs) / len(probs) if probs else self.mean

    @property
    def n(self) -> int:
        return len(self.scores)


@dataclass
class Evaluator:
    task: Task
    backend: Backend  # normally a CachedBackend
    scorer: str | Scorer | None = None  # default: the task's metric
    budget: Budget = field(default_factory=Budget)
    progress: Progress | None = None
    chunk_size: int = 64  # examples per backend call; the cache commits per call
    max_new_tokens: int = 32
    harness: Harness | str | None = None  # a Harness or a spec such as "fewshot:k=4+cot+sc:n=5"
    phase: Callable[[str], None] | None = None  # searchers announce their phases through this
    select_by: str = "accuracy"  # what searchers rank by (selection.py): accuracy, or gold_prob
    race_level: float | None = None  # racing drops only candidates behind the leader at this level

    def __post_init__(self):
        self.metric_name, self._scorer = resolve_scorer(self.scorer or self.task.metric)
        if not isinstance(self.harness, Harness):
            self.harness = parse_harness(self.harness)
        if self.harness.fewshot_k > len(self.task.train) - (1 if self.harness.per_example else 0):
            raise PromptSearchError(
                f"Harness '{self.harness.spec}' asks for {self.harness.fewshot_k} demos, but task '{self.task.name}' "
                f"has {len(self.task.train)} train examples; use a smaller k."
            )
        if self.harness.calibrate and not self.task.labels:
            raise PromptSearchError(
                f"Harness '{self.harness.spec}' calibrates label scores, but task '{self.task.name}' "
                "has open answers and no labels; drop calibrate."
            )
        if self.harness.calibrate and self.backend.label_scoring == "generate":
            raise PromptSearchError(
                f"Harness '{self.harness.spec}' calibrates label scores, which "
                f"'{self.backend.model_id}' does not return (it answers by generating); drop calibrate, "
                "or use a server that returns log-probabilities (see the README, 'Which servers score how')."
            )
        self._by_id = {e.id: e for e in self.task.train}
        self._vectors: dict = {}  # input text -> unit embedding (kNN demos)
        # (candidate key, scored ids if transductive) -> (label bias, how many inputs it came from)
        self._bias: dict[tuple, tuple[dict[str, float], int]] = {}
        self.meter = Meter(self.budget, self.backend)  # budget, cost, attached models
        self.history: list[EvalResult] = []  # every dev scoring, in order
        self._parent: Evaluator | None = None

    def outside_budget(self) -> "Evaluator":
        """The same task, model, scorer and harness without a budget and with a history of its
        own: for what a searcher reports once its search has ended (a soft prompt's readout),
        scored the way the test split is."""
        child = Evaluator(
            self.task,
            self.backend,
            self.scorer,
            progress=self.progress,
            chunk_size=self.chunk_size,
            max_new_tokens=self.max_new_tokens,
            harness=self.harness,
            phase=self.phase,
            select_by=self.select_by,
            race_level=self.race_level,
        )
        child._parent = self  # its scorings' cost is taken out of this evaluator's (budgeted) cost
        return child

    def say(self, message: str) -> None:
        if self.phase:
            self.phase(message)

    # --- the budget and the cost (evaluation/meter.py) -------------------------------------
    @property
    def cost(self) -> Usage:
        """What this evaluator's work cost since it was made: its scorings and attached
        models, less what scorings outside its budget spent on the same backend meanwhile."""
        return self.meter.cost

    @property
    def dev_evals(self) -> int:
        return self.meter.dev_evals

    @dev_evals.setter
    def dev_evals(self, n: int) -> None:
        self.meter.dev_evals = n

    @property
    def outside_cost(self) -> Usage:
        return self.meter.outside_cost

    def attach(self, backend) -> None:
        """Count another backend's cost in this evaluator's cost and budget from now on."""
        self.meter.attach(backend)

    def check_prices(self) -> None:
        self.meter.check_prices()

    def check_budget(self, n_examples: int = 0, requests=None, backend=None, soft_prompt=None, cut: bool = False):
        """See Meter.check: BudgetExhausted if this scoring (or slice, or proposer batch) may not start."""
        self.meter.check(n_examples, requests, backend, soft_prompt, cut)

    def demos(self, cand: Candidate) -> list[Example]:
        try:
            return [self._by_id[i] for i in cand.demos]
        except KeyError as e:
            raise PromptSearchError(
                f"Candidate '{cand.name}' uses demo id {e.args[0]!r}, which is not in the train split."
            ) from None

    def ask(self, backend, requests: Sequence[GenRequest]) -> list[GenResult]:
        """A searcher's own generation calls (a proposer writing instructions), budgeted like
        scorings: checked before they start, and cut to the model calls the budget has
        left (answers in the cache are free). May return fewer results than requests."""
        requests = list(requests)
        self.attach(backend)
        self.check_budget(0, lambda: requests, backend, cut=True)
        if self.budget.max_calls is not None:
            todo = missing(backend, requests)
            left = max(0, self.budget.max_calls - self.cost.calls)
            if len(todo) > left:
                requests = requests[: todo[left]]  # the cached ones before it come free
        return list(backend.generate(requests)) if requests else []

    def score(self, cand: Candidate, examples: Sequence[Example], split: str = "dev") -> EvalResult:
        """Score a candidate on examples. Search scorings (`dev`, and `train` for searchers
        that read train scores) count against the budget; dev scorings go into `history`;
        test scorings (the final report) count against nothing."""
        return self.score_many([cand], examples, split)[0]

    def score_many(
        self, cands: Sequence[Candidate], examples: Sequence[Example], split: str = "dev"
    ) -> list[EvalResult]:
        """Several candidates on the same examples. Classification requests of all of them go
        to the model together, so a local model runs what they share (each input, under
        many triggers) once; the scores and cache keys are those of scoring one at a time."""
        examples, cands = list(examples), list(cands)
        searching = split in ("dev", "train")
        tasks = [task_for(self.task, c) for c in cands]
        for cand in cands:
            overlap = set(cand.demos) & {e.id for e in examples}
            if overlap:
                raise PromptSearchError(
                    f"Candidate '{cand.name}' shows example {sorted(overlap)[0]!r} as a demo while scoring it; "
                    "demos come from the train split, so score dev or test."
                )
        generates = self.harness.generates(self.task, self.backend.label_scoring != "generate")
        batched = not generates and all(c.soft_prompt is None for c in cands)
        if not batched and len(cands) > 1:
            return [r for c in cands for r in self.score_many([c], examples, split)]
        before = self.meter.usage()
        preds: list[list[str]] = [[] for _ in cands]
        lps: list[list[dict[str, float]]] = [[] for _ in cands]
        firsts: list[list[str]] = [[] for _ in cands]
        stats: dict[str, int] = {}
        counts: list[dict[str, int]] = [{} for _ in cands]  # first-token scoring's bounds and shared tokens
        self._embed(examples, cands)
        label = f"{split} · {cands[0].name or shorten(cands[0].describe(), 30)}" + (
            f" +{len(cands) - 1}" if len(cands) > 1 else ""
        )
        listed = self._lists_options(generates)
        prompts = [
            [render(t, c, ex, self._demos_for(self.shown(c, ex), ex), options=listed) for ex in examples]
            for c, t in zip(cands, tasks)
        ]
        soft = cands[0].soft_prompt
        cal = self.harness.calibration
        if searching:  # the whole scoring against the evaluation budget; each slice below against the others
            self.check_budget(len(examples) * len(cands), requests=list)
        if cal is not None:
            if searching:
                self.check_budget(soft_prompt=soft, requests=lambda: self._bias_requests(cands, tasks, examples)[0])
            self._estimate_bias(cands, tasks, examples, soft)
        step = max(1, self.chunk_size // len(cands))
        for s in range(0, len(examples), step):
            chunk = examples[s : s + step]
            part = [ps[s : s + step] for ps in prompts]
            if searching:  # a slice that would pass a call budget does not start
                self.check_budget(
                    soft_prompt=soft,
                    requests=lambda part=part: (
                        self._gen_requests(tasks[0], part[0]) if generates else self._classify_requests(tasks, part)[0]
                    ),
                )
            if generates:
                p, f = self._generate(
                    tasks[0], cands[0], chunk, self._gen_requests(tasks[0], part[0]), stats, searching
                )
                preds[0] += p
                firsts[0] += f
            else:
                reqs, spans = self._classify_requests(tasks, part)
                res = self._label_call(reqs, soft)
                for k, (p, lp, c) in enumerate(self._classify_read(tasks, spans, res)):
                    preds[k] += p
                    lps[k] += lp
                    for name, v in c.items():
                        counts[k][name] = counts[k].get(name, 0) + v
            if self.progress:
                self.progress(label, len(preds[0]), len(examples))
        if searching:
            self.dev_evals += len(examples) * len(cands)
        calibrated: list[dict] = []
        if cal is not None:
            for k, (cand, task) in enumerate(zip(cands, tasks)):
                # none stored: transductive batch calibration, from the scored inputs themselves
                bias, n = self._bias.get(self._bias_key(cand, examples)) or (
                    calibration.estimate(lps[k], "batch"),
                    len(examples),
                )
                lps[k] = [calibration.apply(lp, bias) for lp in lps[k]]
                preds[k] = [max(task.labels, key=lp.__getitem__) for lp in lps[k]]
                calibrated.append(
                    {
                        "mode": cal.mode,
                        "inputs": n,
                        "transductive": cal.transductive,
                        "bias": {lab: round(math.exp(v), 4) for lab, v in calibration.normalised(bias).items()},
                    }
                )
        out = []
        spent = self.meter.usage() - before
        if self._parent is not None:
            self._parent.meter.outside_cost = self._parent.meter.outside_cost + spent
        for k, cand in enumerate(cands):
            scores = [self._apply_scorer(p, ex) for p, ex in zip(preds[k], examples)]
            mean, se = mean_se(scores)
            extras: dict = {}
            if generates:
                extras = {"samples": self.harness.sc_n, **stats}
                if self.harness.sampling:
                    first_scores = [self._apply_scorer(p, ex) for p, ex in zip(firsts[k], examples)]
                    extras.update({"maj@n": mean, "first_sample": mean_se(first_scores)[0]})
            if calibrated:
                extras = {"calibration": calibrated[k]}
            if not generates and self.backend.label_scoring == "first_token":
                extras = {**extras, "first_token": {"top_k": first_token.TOP_K, **counts[k]}}
            # a batch's cost is shared evenly among its candidates
            cost = spent if len(cands) == 1 else _share(spent, len(cands))
            if self._parent is not None:  # a search's after-the-fact scoring (a readout): tables keep it apart
                extras = {**extras, "outside_search": True}
            result = EvalResult(
                cand,
                split,
                mean,
                se,
                scores,
                preds[k],
                [e.id for e in examples],
                cost,
                lps[k] or None,
                [e.answers for e in examples] if lps[k] else None,
                select_by=self.select_by,
                extras=extras,
            )
            if split == "dev":
                result.step = len(self.history)
                self.history.append(result)
            out.append(result)
        return out

    def answer_logprobs(self, cands: Sequence[Candidate], examples: Sequence[Example]) -> list[list[float]]:
        """Per candidate, the log-probability of each example's first gold answer after the
        candidate's prompt: the training signal of searchers that fit a prompt to an
        open-answer task. Cached and budgeted like a train scoring; not in `history`."""
        examples, cands = list(examples), list(cands)
        if len({id(c.soft_prompt) for c in cands}) > 1:  # one soft prompt per model call
            return [lp for c in cands for lp in self.answer_logprobs([c], examples)]
        tasks = [task_for(self.task, c) for c in cands]
        self._embed(examples, cands)

        def requests(chunk: list[Example]) -> list[LoglikRequest]:
            out = []
            for c, t in zip(cands, tasks):
                for ex in chunk:
                    p = render(t, c, ex, self._demos_for(self.shown(c, ex), ex))
                    out.append(LoglikRequest(p, continuation(p, ex.answers[0])))
            return out

        self.check_budget(len(examples) * len(cands), requests=list)
        out: list[list[float]] = [[] for _ in cands]
        step = max(1, self.chunk_size // max(1, len(cands)))  # every candidate of an example in one call
        for s in range(0, len(examples), step):
            chunk = examples[s : s + step]
            soft = cands[0].soft_prompt
            self.check_budget(requests=lambda chunk=chunk: requests(chunk), soft_prompt=soft)
            res = self.backend.loglikelihood(requests(chunk), **({"soft_prompt": soft} if soft is not None else {}))
            for k in range(len(cands)):
                out[k] += [r.logprob for r in res[k * len(chunk) : (k + 1) * len(chunk)]]
        self.dev_evals += len(examples) * len(cands)
        return out

    # --- calibration -------------------------------------------------------------------
    def _bias_key(self, cand: Candidate, examples: Sequence[Example]) -> tuple:
        cal = self.harness.calibration
        return (cand.key(), tuple(e.id for e in examples) if cal.transductive else ())

    def _bias_requests(self, cands: Sequence[Candidate], tasks: list[Task], examples: Sequence[Example]):
        """The label requests that estimate the bias of each candidate not estimated yet:
        (requests, spans, [(candidate index, its key)])."""
        cal = self.harness.calibration
        if cal is None:
            return [], [], []
        todo, ts, prompts, seen = [], [], [], set(self._bias)
        listed = self._lists_options(False)
        for i, (c, t) in enumerate(zip(cands, tasks)):
            key = self._bias_key(c, examples)
            if key in seen:
                continue
            seen.add(key)
            inputs = cal.inputs(self.task, list(examples), exclude=set(c.demos))
            if not inputs:  # transductive batch calibration: the scored inputs themselves
                continue
            todo.append((i, key))
            ts.append(t)
            self._embed(inputs, [c])
            prompts.append([render(t, c, x, self._demos_for(self.shown(c, x), x), options=listed) for x in inputs])
        reqs, spans = self._classify_requests(ts, prompts)
        return reqs, spans, todo

    def _estimate_bias(self, cands: Sequence[Candidate], tasks: list[Task], examples: Sequence[Example], soft) -> None:
        """Each candidate's label bias, from its estimation inputs' label log-probabilities:
        one model call for every candidate that needs one (cached like any request)."""
        reqs, spans, todo = self._bias_requests(cands, tasks, examples)
        if not reqs:
            return
        res = []
        for s in range(0, len(reqs), self.chunk_size * 2):
            res += self._label_call(reqs[s : s + self.chunk_size * 2], soft)
        for (_i, key), (_, rows, _c) in zip(todo, self._classify_read([tasks[i] for i, _ in todo], spans, res)):
            self._bias[key] = (calibration.estimate(rows, self.harness.calibrate), len(rows))

    # --- demos ---------------------------------------------------------------------------
    def shown(self, cand: Candidate, ex: Example) -> list[Example]:
        """The candidate's demos for this example: its fixed ones, or with `knn`, the k train
        examples nearest to the input (never the example itself), the nearest last, next to
        the query (KATE's order)."""
        if not cand.knn:
            return self.demos(cand)
        import numpy as np

        pool = [e for e in self.task.train if e.id != ex.id]
        q = self._vectors[ex.input]
        sims = [float(np.dot(q, self._vectors[e.input])) for e in pool]
        order = sorted(range(len(pool)), key=lambda i: -sims[i])[: cand.knn]
        return [pool[i] for i in reversed(order)]

    def _embed(self, examples: Sequence[Example], cands: Sequence[Candidate]) -> None:
        """Unit-length embeddings of the inputs kNN candidates will compare (train and these
        examples), asked of the backend once per text, in one call."""
        if not any(c.knn for c in cands):
            return
        from promptsearch.backends.base import embedding_vector, no_embeddings

        texts = list(dict.fromkeys(e.input for e in [*self.task.train, *examples] if e.input not in self._vectors))
        if not texts:
            return
        if not self.backend.capabilities.embed:
            raise no_embeddings(self.backend.model_id)
        for t, r in zip(texts, self.backend.embed(texts)):
            v = embedding_vector(r)
            self._vectors[t] = v / max(float((v @ v) ** 0.5), 1e-12)

    def _demos_for(self, cand_demos: list[Example], ex: Example) -> list[Example]:
        """The candidate's own demos, then the harness's few-shot demos for this example."""
        ids = {d.id for d in cand_demos}
        return cand_demos + [d for d in self.harness.demos(self.task, ex) if d.id not in ids]

    def _lists_options(self, generates: bool) -> bool:
        """Whether prompts name the labels ("Answer with one of: ..."): for a generated answer
        (as the harness says), and for first-token scoring, which reads the answer's first token."""
        if not generates and self.task.labels and self.backend.label_scoring == "first_token":
            return self.harness.show_options is not False
        return self.harness.lists_options(self.task, self.backend.can_loglikelihood)

    def _label_call(self, reqs: list, soft=None) -> list:
        if reqs and isinstance(reqs[0], FirstTokenRequest):
            return self.backend.first_token(reqs)
        return self.backend.loglikelihood(reqs, **({"soft_prompt": soft} if soft is not None else {}))

    def _classify_requests(self, tasks: list[Task], prompts: list[list[Prompt]]):
        """One request per (candidate, prompt, label word), or with first-token scoring one per
        (candidate, prompt); spans index them back."""
        reqs: list = []
        spans = []
        if self.backend.label_scoring == "first_token":
            for ps in prompts:
                spans.append(list(range(len(reqs), len(reqs) + len(ps))))
                reqs += [FirstTokenRequest(ctx, first_token.TOP_K) for ctx in ps]
            return reqs, spans
        for task, ps in zip(tasks, prompts):
            rows = []
            for ctx in ps:
                row = {}
                for lab, word in task.labels.items():
                    start = len(reqs)
                    reqs += [LoglikRequest(ctx, continuation(ctx, w)) for w in label_words(word)]
                    row[lab] = (start, len(reqs))
                rows.append(row)
            spans.append(rows)
        return reqs, spans

    @staticmethod
    def _classify_read(tasks: list[Task], spans, res):
        """Per candidate: predicted labels, each label's log-probability (over a label's
        several words, the log of their summed probabilities) and, with first-token scoring,
        how many label scores were bounds (`outside_top_k`) and how many examples had a first
        token shared by labels (`shared_first_token`)."""
        out = []
        for task, rows in zip(tasks, spans):
            preds, lps, counts = [], [], {}
            for row in rows:
                if isinstance(row, int):  # first-token scoring
                    got = first_token.label_scores(res[row].top, task.labels)
                    lp = got.logprobs
                    counts["outside_top_k"] = counts.get("outside_top_k", 0) + got.outside_top_k
                    counts["shared_first_token"] = counts.get("shared_first_token", 0) + got.shared
                else:
                    lp = {lab: logsumexp([res[i].logprob for i in range(a, b)]) for lab, (a, b) in row.items()}
                preds.append(max(task.labels, key=lp.__getitem__))
                lps.append(lp)
            out.append((preds, lps, counts))
        return out

    def _gen_requests(self, task: Task, prompts: list[Prompt]) -> list[GenRequest]:
        h = self.harness
        if h.cot:
            prompts = [_append(p, continuation(p, h.trigger)) for p in prompts]
        max_new = h.cot_tokens if h.cot else (8 if task.labels else self.max_new_tokens)
        # CoT text often opens with a blank line, so a blank line cannot end it; stop where the
        # model starts a new example instead (the template's lead, e.g. "\nReview:").
        lead = task.template.split("{input}")[0].strip()
        stop = (("\n" + lead,) if lead else ()) if h.cot else ("\n",)
        temp, top_p = (h.temperature, h.top_p) if h.sampling else (0.0, 1.0)
        return [
            GenRequest(p, max_new, temp, top_p, stop, sample_index=i, seed=h.demo_seed)
            for p in prompts
            for i in range(h.sc_n)
        ]

    def _generate(
        self,
        task: Task,
        cand: Candidate,
        chunk: list[Example],
        reqs: list[GenRequest],
        stats: dict[str, int],
        searching: bool = False,
    ):
        """Generate (with the CoT trigger, n samples), extract an answer from each sample,
        optionally ask "Therefore, the answer is" where extraction failed, and vote."""
        h = self.harness
        soft = {"soft_prompt": cand.soft_prompt} if cand.soft_prompt is not None else {}
        texts = [r.text for r in self.backend.generate(reqs, **soft)]
        found = [extract(t, task, h.cot) for t in texts]
        if h.answer_call:
            redo = [i for i, (_, how) in enumerate(found) if how != "strict"]
            for i, ans in zip(
                redo,
                self._answer_call(task, [_append(reqs[i].prompt, texts[i] + ANSWER_PROMPT) for i in redo], searching),
            ):
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

    def _answer_call(self, task: Task, prompts: list[Prompt], searching: bool = False) -> list[str | None]:
        """Second stage: after the reasoning, "Therefore, the answer is" and a short answer
        (label log-likelihoods where the task has labels and the model can score them);
        budgeted like the slice it belongs to."""
        if not prompts:
            return []
        if task.labels and self.backend.can_loglikelihood:
            reqs, spans = self._classify_requests([task], [prompts])
            if searching:
                self.check_budget(requests=lambda: reqs)
            return self._classify_read([task], spans, self.backend.loglikelihood(reqs))[0][0]
        gen = [GenRequest(p, 16, stop=("\n",)) for p in prompts]
        if searching:
            self.check_budget(requests=lambda: gen)
        texts = [r.text for r in self.backend.generate(gen)]
        return [extract(t, task, cot=False)[0] for t in texts]

    def _apply_scorer(self, pred: str, ex: Example) -> float:
        try:
            value = float(self._scorer(pred, ex))
        except Exception as e:  # a user's scorer: report, don't crash with a traceback
            raise PromptSearchError(
                f"Scorer '{self.metric_name}' failed on example {ex.id}: {type(e).__name__}: {e}"
            ) from None
        if math.isnan(value):
            raise PromptSearchError(f"Scorer '{self.metric_name}' returned NaN on example {ex.id}.")
        return value


def gold_prob(logprobs: dict[str, float], golds: tuple[str, ...]) -> float:
    """The probability of the gold label(s), the label scores normalised by softmax."""
    top = max(logprobs.values())
    z = sum(math.exp(v - top) for v in logprobs.values())
    return sum(math.exp(logprobs[g] - top) for g in golds if g in logprobs) / z


def label_set_logprobs(logprobs: dict[str, float]) -> dict[str, float]:
    """Label log-probabilities renormalised over the label set (a log-softmax): what
    searchers turn into a cross-entropy or a probability margin."""
    return calibration.normalised(logprobs)


def _share(cost: Usage, n: int) -> Usage:
    return Usage(
        cost.calls // n,
        cost.cache_hits // n,
        cost.tokens // n,
        cost.seconds / n,
        cost.dollars / n,
        cost.unpriced_calls // n,
    )


def _append(prompt: Prompt, text: str) -> Prompt:
    return prompt + text if isinstance(prompt, str) else (*prompt, text)
