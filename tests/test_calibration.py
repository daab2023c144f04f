"""Calibration (label-bias correction) in the evaluator: the arithmetic, what it is estimated
from, its cache, and the harness combinations it refuses."""

import math
import random
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from fakes import GOLD, FakeBackend, flat, query_of
from promptsearch import Candidate, Example
from promptsearch.backends.base import LoglikResult
from promptsearch.cli import app
from promptsearch.errors import PromptSearchError
from promptsearch.evaluation import Evaluator
from promptsearch.evaluation.calibration import apply, estimate, normalised
from promptsearch.evaluation.harness import parse_harness
from promptsearch.runner import run_search
from promptsearch.store import CachedBackend, Store
from promptsearch.tasks import load_task


class BiasedBackend(FakeBackend):
    """Knows the gold label of the sentiment task's texts (signal +1 for the right word) and
    adds a constant bias of `bias` nats to "positive"; any other text gets the bias alone."""

    def __init__(self, bias: float = 3.0, **kw):
        super().__init__(**kw)
        self.bias = bias

    def loglikelihood(self, requests, soft_prompt=None):
        self._tick(len(requests))
        self.requests += list(requests)
        out = []
        for r in requests:
            word = r.continuation.strip()
            gold = GOLD.get(query_of(flat(r.context)))
            lp = -2.0 + (1.0 if word == gold else 0.0) + (self.bias if word in ("positive", "good") else 0.0)
            out.append(LoglikResult(lp, False, 5))
        return out


def test_arithmetic_removes_a_constant_bias_and_leaves_an_unbiased_model_alone():
    rows = [{"a": -0.1 + 2.0, "b": -2.3}, {"a": -2.3 + 2.0, "b": -0.1}, {"a": 0.5, "b": -1.0}]
    shift = lambda rs: [{"a": r["a"] + 5.0, "b": r["b"]} for r in rs]  # noqa: E731 - the same inputs, biased to "a"
    # batch: the mean log-probability moves by exactly the bias, whatever the inputs
    for r, s in zip(rows, shift(rows)):
        assert apply(s, estimate(shift(rows), "batch")) == pytest.approx(apply(r, estimate(rows, "batch")))
    # contextual / domain: exact when the estimation inputs carry no signal of their own
    content_free = [{"a": -1.0, "b": -1.0}, {"a": -3.0, "b": -3.0}]
    for mode in ("contextual", "domain"):
        for r, s in zip(rows, shift(rows)):
            assert apply(s, estimate(shift(content_free), mode)) == pytest.approx(normalised(r))
    uniform = {"a": math.log(0.5), "b": math.log(0.5)}
    for r in rows:
        assert apply(r, uniform) == pytest.approx(normalised(r))  # no bias: nothing changes
    assert sum(math.exp(v) for v in apply(rows[0], estimate(rows, "contextual")).values()) == pytest.approx(1.0)


@pytest.mark.parametrize("mode", ["contextual", "domain", "batch"])
def test_a_biased_model_is_corrected_in_every_mode(mode):
    task = load_task("sentiment")
    raw = Evaluator(task, BiasedBackend()).score(Candidate(name="empty"), task.test, split="test")
    assert raw.mean == pytest.approx(0.5) and set(raw.predictions) == {"positive"}  # one label for everything
    cal = Evaluator(task, BiasedBackend(), harness=f"calibrate:mode={mode}").score(
        Candidate(name="empty"), task.test, split="test"
    )
    assert cal.mean == 1.0
    assert cal.extras["calibration"]["mode"] == mode and cal.extras["calibration"]["bias"]["positive"] > 0.5
    assert all(sum(math.exp(v) for v in lp.values()) == pytest.approx(1.0) for lp in cal.label_logprobs)


@pytest.mark.parametrize("mode", ["domain", "batch"])
def test_estimation_uses_inputs_never_labels(mode):
    """Shuffling (or flipping) the labels of train and dev changes no calibrated test score."""
    task = load_task("sentiment")
    labels = list(task.labels)
    rng = random.Random(0)
    relabel = lambda xs: [replace(e, target=(rng.choice(labels),)) for e in xs]  # noqa: E731
    shuffled = replace(task, train=relabel(task.train), dev=relabel(task.dev))
    a = Evaluator(task, BiasedBackend(), harness=f"calibrate:mode={mode}").score(Candidate(), task.test, split="test")
    b = Evaluator(shuffled, BiasedBackend(), harness=f"calibrate:mode={mode}").score(
        Candidate(), task.test, split="test"
    )
    assert a.scores == b.scores and a.label_logprobs == b.label_logprobs


def test_estimates_are_per_candidate_and_follow_its_own_label_words():
    task = load_task("sentiment")
    fake = BiasedBackend()
    ev = Evaluator(task, fake, harness="calibrate:mode=contextual")
    words = Candidate(labels=(("positive", ("good",)), ("negative", ("bad",))), name="words")
    ev.score(words, task.dev[:4])
    content_free = [r for r in fake.requests if query_of(flat(r.context)) in ("N/A", "", "[MASK]")]
    assert {r.continuation.strip() for r in content_free} == {"good", "bad"}  # the candidate's words
    assert len(content_free) == 3 * 2
    ev.score(Candidate(instruction="Judge it.", name="other"), task.dev[:4])  # another prompt: its own estimate
    assert sum(query_of(flat(r.context)) in ("N/A", "", "[MASK]") for r in fake.requests) == 3 * 2 * 2
    ev.score(words, task.dev[4:8])  # the same candidate again: the estimate is reused
    assert sum(query_of(flat(r.context)) in ("N/A", "", "[MASK]") for r in fake.requests) == 3 * 2 * 2


def test_estimation_requests_are_cached_and_a_cached_rerun_calls_nothing(tmp_path):
    task = load_task("sentiment")
    store = Store(tmp_path / "c.db")
    first = CachedBackend(BiasedBackend(), store)
    spec = "fewshot:k=4+calibrate:mode=domain"
    a = Evaluator(task, first, harness=spec).score(Candidate(), task.dev)
    assert first.usage.calls == (len(task.dev) + 20) * 2  # dev and 20 domain strings, two labels each
    again = CachedBackend(BiasedBackend(), store)
    b = Evaluator(task, again, harness=spec).score(Candidate(), task.dev)
    assert again.usage.calls == 0 and again.usage.cache_hits == first.usage.calls and a.scores == b.scores


def test_batch_estimation_inputs_share_answers_with_the_scoring(tmp_path):
    """Batch calibration's inputs come from train+dev, so a dev scoring finds part of its
    estimation already answered: those requests are cache hits, not new calls."""
    task = load_task("sentiment")
    cb = CachedBackend(BiasedBackend(), Store(tmp_path / "c.db"))
    Evaluator(task, cb, harness="calibrate").score(Candidate(), task.dev)
    assert 0 < cb.usage.cache_hits and cb.usage.calls + cb.usage.cache_hits == (len(task.dev) + 32) * 2


def test_calibrated_and_raw_runs_share_answers_never_scores(tmp_path):
    task = load_task("sentiment")
    db = str(tmp_path / "runs.db")
    cal = run_search(task, model=BiasedBackend(), searcher="baseline", db=db, harness="calibrate:mode=batch")
    raw = run_search(task, model=BiasedBackend(), searcher="baseline", db=db)
    assert cal["harness"] == "calibrate:mode=batch" and raw["harness"] == "zero-shot"
    assert cal["record"]["harness"]["calibration"] == {"mode": "batch", "n": 32, "transductive": False, "seed": 0}
    assert raw["record"]["harness"]["calibration"] is None
    assert cal["best"]["test"]["mean"] == 1.0
    # the raw run reads the same label answers from the cache and scores them raw
    assert raw["best"]["test"]["mean"] < 1.0 and raw["cost"]["total"]["cache_hits"] > 0
    uncached = Evaluator(task, BiasedBackend()).score(Candidate.from_dict(raw["best"]["candidate"]), task.test, "test")
    assert raw["best"]["test"]["mean"] == pytest.approx(round(uncached.mean, 4))

    from promptsearch.report.leaderboard import build

    rows = build([r.document() for r in Store(db).runs()])["rows"]
    assert sorted(r["harness"] for r in rows) == ["calibrate:mode=batch", "zero-shot"]  # never one cell


def test_transductive_batch_calibration_costs_no_extra_call():
    task = load_task("sentiment")
    fake = BiasedBackend()
    res = Evaluator(task, fake, harness="calibrate:mode=batch,transductive=true").score(Candidate(), task.test, "test")
    assert len(fake.requests) == 2 * len(task.test) and res.mean == 1.0
    assert res.extras["calibration"]["transductive"] is True


@pytest.mark.parametrize(
    "spec, message",
    [
        ("cot+calibrate", "answers by generating"),
        ("sc:n=3+calibrate", "answers by generating"),
        ("calibrate:mode=magic", "must be one of contextual, domain, batch"),
        ("calibrate:n=-1", "at least 1"),
        ("calibrate:size=3", "is not one of"),
    ],
)
def test_bad_harness_combinations_are_one_error(spec, message):
    with pytest.raises(PromptSearchError, match=message):
        parse_harness(spec)


def test_calibration_needs_labels_and_label_loglikelihoods():
    exs = [Example(str(i), f"{i}", (str(i),)) for i in range(6)]
    open_task = load_task("sentiment")
    open_task = replace(open_task, train=exs[:2], dev=exs[2:4], test=exs[4:], labels={}, metric="exact_match")
    with pytest.raises(PromptSearchError, match="open answers"):
        Evaluator(open_task, FakeBackend(), harness="calibrate")
    with pytest.raises(PromptSearchError, match="does not return"):
        Evaluator(load_task("sentiment"), FakeBackend(can_loglikelihood=False), harness="calibrate")


def test_cli_bad_combination_is_one_line_exit_2(fake_backend_registered):
    res = CliRunner().invoke(
        app, ["eval", "--task", "sentiment", "--model", "fake:x", "--prompt", "Hi.", "--harness", "cot+calibrate"]
    )
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    ok = CliRunner().invoke(
        app,
        [
            "eval",
            "--task",
            "sentiment",
            "--model",
            "fake:x",
            "--prompt",
            "Hi.",
            "--harness",
            "fewshot:k=4+calibrate:mode=contextual",
        ],
    )
    assert ok.exit_code == 0 and "calibration: contextual" in ok.output
