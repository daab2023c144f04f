"""The finalists of a run: the search's best and the baselines, compared outside the search
budget. The pick is made on the whole dev split (a search that does not beat a baseline
there returns that baseline, and says so); then every finalist is scored once on test and
the pick is compared with each of the others, paired, example by example."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from promptsearch.candidates import Candidate
from promptsearch.cost import Usage
from promptsearch.document import Finalist, Score
from promptsearch.evaluation.evaluator import EvalResult, Evaluator
from promptsearch.evaluation.stats import PairedDiff, paired_bootstrap
from promptsearch.searchers.base import Searcher
from promptsearch.searchers.baseline import baseline_candidates
from promptsearch.selection import Confirmation, Selection, confirm
from promptsearch.tasks.base import Task


@dataclass
class Finalists:
    search_best: Candidate
    search_score: float  # its dev score as the search measured it
    baselines: list[Candidate]
    baseline_shots: int
    devs: dict[str, EvalResult]  # candidate key -> its scoring on the whole dev split
    tests: dict[str, EvalResult]  # candidate key -> its scoring on test
    picked: Candidate
    select_cost: Usage
    test_cost: Usage
    confirmation: Confirmation | None = None  # the gate's evidence, when the run has a gate

    @property
    def picked_search(self) -> bool:
        return self.picked is self.search_best

    def named_tests(self) -> list[tuple[str, EvalResult]]:
        """Each finalist's name with its test scoring: a baseline whose prompt is the search's
        best is scored once and stored under both names, so the one a run returns is found."""
        named = {c.name: self.tests[c.key()] for c in [self.search_best, *self.baselines]}
        return list(named.items())

    def baseline_records(self, seed: int) -> list[Finalist]:
        best = self.tests[self.picked.key()]
        out = []
        for b in self.baselines:
            rec = self.record(b)
            rec.best_minus_baseline = _rounded(paired_bootstrap(best.scores, self.tests[b.key()].scores, seed=seed))
            out.append(rec)
        return out

    def search_best_record(self, seed: int) -> Finalist:
        c = self.search_best
        rec = self.record(c)
        rec.dev_in_search = round(self.search_score, 4)
        if not self.picked_search:
            picked = self.tests[self.picked.key()].scores
            rec.picked_minus_it = _rounded(paired_bootstrap(picked, self.tests[c.key()].scores, seed=seed))
        return rec

    def best_record(self) -> Finalist:
        rec = self.record(self.picked)
        rec.picked = "search" if self.picked_search else "baseline"
        return rec

    def record(self, c: Candidate) -> Finalist:
        test = self.tests[c.key()]
        return Finalist(
            c.name, c.describe(), c.to_dict(), scores(self.devs[c.key()]), scores(test), rounded(test.extras)
        )


def baselines_for(task: Task, searcher: Searcher, shots: int | None, seed: int) -> tuple[list[Candidate], int]:
    """The baselines, following the search's own settings where it has them (shots=8 on dev
    is compared with 8-shot on test), capped to the train split; and the shots used."""
    cfg = searcher.config
    shots = min(getattr(cfg, "shots", 4) if shots is None else shots, len(task.train))
    cands = baseline_candidates(
        task,
        shots=shots,
        seed=seed,
        balanced=getattr(cfg, "balanced", True),
        max_manual=getattr(cfg, "max_manual", 5),
    )
    return cands, shots


def decide(
    evaluator: Evaluator,
    search_best: Candidate,
    search_score: float,
    baselines: list[Candidate],
    shots: int,
    say: Callable[[str], None],
    task: Task | None = None,
    selection: Selection | None = None,
    split: tuple[list, list] | None = None,
    seed: int = 0,
) -> Finalists:
    """Dev pick (or, with a gate, the confirmation on the fold the search did not see), then
    test, each outside the search budget with evaluators of their own (the answers of the
    search's dev scorings come from the cache). `task`: the whole task when the search saw
    only the selection fold (`split`: selection and confirmation examples)."""
    task = task or evaluator.task
    selection = selection or Selection()
    finalists = [search_best] + [b for b in baselines if b.key() != search_best.key()]
    say(f"Checking the search's best against {len(baselines)} baselines on {len(task.dev)} dev examples")
    dev_eval = _fresh(evaluator, task)
    devs = {c.key(): dev_eval.score(c, task.dev, split="dev") for c in finalists}
    # taken now: a cost is what the shared backend spent since the evaluator was made, and test comes next
    select_cost = dev_eval.cost + evaluator.outside_cost  # a searcher's own after-the-fact scorings count here
    confirmation = None
    if selection.gate is not None and split is not None:
        ids = ([e.id for e in split[0]], [e.id for e in split[1]])
        confirmation = confirm(search_best, baselines, devs, *ids, selection, seed)
        picked = search_best if confirmation.passed else next(b for b in baselines if b.name == confirmation.baseline)
        say(confirmation.line(search_best.name))
    else:
        score = lambda c: (devs[c.key()].selection, c is search_best)  # noqa: E731 (a tie keeps the search's)
        picked = max(finalists, key=score)
    which = "best prompt" if picked is search_best else "pick"
    say(f"Scoring the {which} and the baselines on {len(task.test)} test examples")
    test_eval = _fresh(evaluator, task)
    tests = {c.key(): test_eval.score(c, task.test, split="test") for c in finalists}
    return Finalists(
        search_best, search_score, baselines, shots, devs, tests, picked, select_cost, test_eval.cost, confirmation
    )


def scores(r: EvalResult | None) -> Score | None:
    if r is None:
        return None
    return Score(round(r.mean, 4), None if r.stderr != r.stderr else round(r.stderr, 4), r.n)


def _rounded(d: PairedDiff) -> PairedDiff:
    return PairedDiff(**d.to_dict())


def rounded(extras: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in extras.items()}


def _fresh(ev: Evaluator, task: Task) -> Evaluator:
    """The search's model, scorer and harness on `task`, with no budget and a history of its own."""
    return Evaluator(task, ev.backend, ev.scorer, progress=ev.progress, harness=ev.harness, select_by=ev.select_by)
