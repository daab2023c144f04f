"""Label scores from chat answers' first-token log-probabilities: the scoring rule, a chat
server (scripted over real HTTP on 127.0.0.1) that returns `top_logprobs` or ignores them,
calibration on those scores, budgets, dry runs and cache keys."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sqlite3
import sys
from pathlib import Path

import pytest

from promptsearch.backends.openai_api import OpenAIBackend
from promptsearch.budget import Budget
from promptsearch.candidates import Candidate
from promptsearch.errors import PromptSearchError
from promptsearch.evaluation.first_token import label_scores
from promptsearch.runner import run_eval, run_search
from promptsearch.tasks.builtin import sentiment
from servers import ReplayServer, ScriptedServer

sys.path.insert(0, str(Path(__file__).parent / "recordings"))  # record_llama_cpp.score: the recorded cases

LN = math.log


def backend(url: str, **kw) -> OpenAIBackend:
    kw = {"concurrency": 1, "max_tries": 2, "retry_max_wait": 0.05, "timeout": 10, **kw}
    return OpenAIBackend("scripted-model", base_url=url, **kw)


def small(n_dev: int = 8):
    t = sentiment()
    return dataclasses.replace(t, train=t.train[:12], dev=t.dev[:n_dev], test=t.test[:6])


# --- the scoring rule ---------------------------------------------------------------------------
def test_case_and_space_variants_add_up_and_other_tokens_do_not_count():
    top = [["Positive", LN(0.4)], [" positive", LN(0.2)], ["Neg", LN(0.1)], ["The", LN(0.2)], ["\n", LN(0.05)]]
    got = label_scores(top, {"positive": "positive", "negative": "negative"})
    assert got.logprobs["positive"] == pytest.approx(LN(0.6))
    assert got.logprobs["negative"] == pytest.approx(LN(0.1))
    assert got.outside_top_k == 0 and not got.shared


def test_a_label_outside_the_top_k_gets_the_bound_and_is_counted():
    # three tokens listed, 0.9 of the mass: `neutral` has at most min(p_K, 0.1) = 0.05
    top = [["positive", LN(0.6)], ["negative", LN(0.25)], ["Ok", LN(0.05)]]
    got = label_scores(top, {"pos": "positive", "neg": "negative", "neu": "neutral"})
    assert got.outside_top_k == 1
    assert got.logprobs["neu"] == pytest.approx(LN(0.05))
    # two absent labels share what is left: min(0.05, 0.1 / 2)
    got = label_scores(top, {"pos": "positive", "a": "alpha", "b": "beta"})
    assert got.outside_top_k == 2 and got.logprobs["a"] == pytest.approx(LN(0.05)) == got.logprobs["b"]


def test_two_labels_sharing_a_first_token_split_it():
    top = [["New", LN(0.5)], [" Boston", LN(0.3)], ["new", LN(0.1)]]
    got = label_scores(top, {"ny": "New York", "nj": "New Jersey", "bos": "Boston"})
    assert got.shared and got.logprobs["ny"] == pytest.approx(LN(0.3)) == got.logprobs["nj"]
    assert got.logprobs["bos"] == pytest.approx(LN(0.3))


def test_a_label_with_several_words_counts_each():
    top = [["great", LN(0.3)], ["good", LN(0.2)], ["bad", LN(0.4)]]
    got = label_scores(top, {"pos": ["great", "good"], "neg": ["terrible", "bad"]})
    assert got.logprobs["pos"] == pytest.approx(LN(0.5)) and got.logprobs["neg"] == pytest.approx(LN(0.4))


# --- through a chat server ----------------------------------------------------------------------
def biased(prompt: str) -> list:
    """A chat model with a constant lean to `positive`: on negative reviews it still gives
    `positive` 0.6, on positive ones 0.9. Every answer is positive, but the lean is constant."""
    review = prompt.rsplit("Review:", 1)[-1]
    words = ("frustrat", "never", "terrible", "bad", "worst", "disappoint", "broke", "slow", "rude", "not ")
    neg = any(w in review.lower() for w in words)
    p = 0.6 if neg else 0.9
    return [["Positive", LN(p * 0.7)], [" positive", LN(p * 0.3)], ["Negative", LN((1 - p) * 0.9)], ["I", LN(0.01)]]


def test_chat_scoring_is_one_call_per_example_and_names_itself(tmp_path):
    with ScriptedServer(top=biased) as srv:
        b = backend(srv.url, scoring="logprobs")
        res, doc = run_eval(small(), Candidate(name="p"), model=b, split="dev", db=str(tmp_path / "a.db"))
        body = srv.requests[0]
    assert len(srv.requests) == 8  # one per example, not one per label
    assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_completion_tokens"] == 1
    assert body["max_tokens"] == 1  # what llama.cpp's server reads
    assert "Answer with one of: negative, positive." in body["messages"][0]["content"]
    assert doc["model"]["scoring"] == "first_token"
    assert res.label_logprobs and all(lp["positive"] > lp["negative"] for lp in res.label_logprobs)
    assert res.extras["first_token"] == {"top_k": 20, "outside_top_k": 0, "shared_first_token": 0}
    assert res.gold_probs is not None and len(res.gold_probs) == 8


def test_calibration_on_chat_scores_removes_a_constant_bias(tmp_path):
    task = small(n_dev=16)
    golds = [e.label for e in task.dev]
    assert 0 < golds.count("negative") < len(golds)
    with ScriptedServer(top=biased) as srv:
        raw, _ = run_eval(task, Candidate(name="p"), model=backend(srv.url, scoring="logprobs"), split="dev")
        cal, doc = run_eval(
            task, Candidate(name="p"), model=backend(srv.url, scoring="logprobs"), split="dev", harness="calibrate"
        )
    truth = [1.0 if (e.label == "negative") == biased_neg(e.input) else 0.0 for e in task.dev]
    assert raw.predictions == ["positive"] * len(golds)  # the lean wins everywhere
    assert cal.mean == pytest.approx(sum(truth) / len(truth)) and cal.mean > raw.mean
    assert set(cal.predictions) == {"positive", "negative"}
    assert cal.extras["calibration"]["mode"] == "batch" and doc["model"]["scoring"] == "first_token"


def biased_neg(text: str) -> bool:
    return biased("Review:" + text)[0][1] < LN(0.9 * 0.7) - 1e-9


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_auto_falls_back_to_generation_on_a_server_that_ignores_logprobs(tmp_path):
    grab, log = Lines(), logging.getLogger("promptsearch.openai")  # the CLI's logging may not propagate
    log.addHandler(grab)
    try:
        with ScriptedServer(reply=lambda p: "negative") as srv:
            res, doc = run_eval(small(), Candidate(name="p"), model=backend(srv.url), split="dev")
            probe = srv.requests[0]
    finally:
        log.removeHandler(grab)
    assert probe["logprobs"] is True  # asked once ...
    assert sum(bool(r.get("logprobs")) for r in srv.requests) == 1  # ... and never again
    assert doc["model"]["scoring"] == "generate" and res.label_logprobs is None
    lines = [line for line in grab.lines if "returns no log-probabilities" in line]
    assert len(lines) == 1 and "scored by generating and parsing answers" in lines[0]
    assert set(res.predictions) == {"negative"}


def test_auto_uses_logprobs_where_the_server_returns_them(tmp_path):
    with ScriptedServer(top=biased) as srv:
        res, doc = run_eval(small(), Candidate(name="p"), model=backend(srv.url), split="dev")
    assert doc["model"]["scoring"] == "first_token" and res.label_logprobs
    assert len(srv.requests) == 1 + 8  # the probe, then one per example


def test_the_two_scorings_have_different_cache_keys(tmp_path):
    db = str(tmp_path / "k.db")
    with ScriptedServer(top=biased) as srv:
        run_eval(small(), Candidate(name="p"), model=backend(srv.url, scoring="logprobs"), split="dev", db=db)
        n = len(srv.requests)
        run_eval(small(), Candidate(name="p"), model=backend(srv.url, scoring="generate"), split="dev", db=db)
        assert len(srv.requests) == n + 8  # nothing the first scoring stored answers the second
        run_eval(small(), Candidate(name="p"), model=backend(srv.url, scoring="logprobs"), split="dev", db=db)
        assert len(srv.requests) == n + 8  # and each reads its own back
    kinds = sqlite3.connect(db).execute("select kind, count(*) from cacheentry group by kind").fetchall()
    assert dict(kinds) == {"first_token": 8, "gen": 8}


def test_calibrate_without_label_scores_is_one_line():
    with ScriptedServer(reply=lambda p: "positive") as srv:
        with pytest.raises(PromptSearchError, match="calibrates label scores, which 'openai:scripted-model' does not"):
            run_eval(small(), Candidate(name="p"), model=backend(srv.url, scoring="generate"), harness="calibrate")


def test_search_budget_counts_one_call_per_example_and_gold_prob_selection_works(tmp_path):
    from promptsearch.selection import Selection

    with ScriptedServer(top=biased) as srv:
        doc = run_search(
            small(n_dev=12),
            model=backend(srv.url, scoring="logprobs"),
            searcher="baseline",
            budget=Budget(max_calls=30),
            selection=Selection(select_by="gold_prob", gate=None),  # every candidate on all 12 dev examples
            db=str(tmp_path / "b.db"),
        )
    # two candidates on 12 examples each: 24 calls, and a third would pass the budget
    assert doc["cost"]["search"]["calls"] == 24 and doc["stopped_by"].startswith("call budget of 30")
    assert doc["model"]["scoring"] == "first_token"
    assert doc["record"]["selection"]["select_by"] == "gold_prob"
    sel = doc["candidates"][0]["selection"]
    assert sel["score"] == "gold_prob" and 0 < sel["mean"] <= 1 and sel["n"] == 12


def test_dry_run_plans_one_first_token_call_per_example(tmp_path):
    plan = run_search(
        small(n_dev=8),
        model=backend("http://127.0.0.1:9/v1", scoring="logprobs"),  # nothing listens: nothing is asked
        searcher="baseline",
        db=str(tmp_path / "d.db"),
        dry_run=True,
    )
    assert plan["schema"] == "promptsearch.plan/1" and plan["calls"] > 0
    assert plan["model"]["scoring"] == "first_token"


def test_spec_option_and_its_bad_value(monkeypatch):
    from promptsearch.backends.openai_api import load_openai
    from promptsearch.settings import get_settings

    b = load_openai("m,base_url=http://127.0.0.1:9/v1,scoring=generate", get_settings())
    assert b.capabilities.first_token is False and b.scoring == "generate"
    with pytest.raises(PromptSearchError, match="scoring='maybe' must be auto, logprobs or generate"):
        load_openai("m,base_url=http://127.0.0.1:9/v1,scoring=maybe", get_settings())
    assert json.dumps(b.identity())  # the identity is unchanged by the scoring: generations share the cache


# --- a real server's answers, replayed ----------------------------------------------------------
RECORDING = Path(__file__).parent / "recordings" / "llama_cpp_first_token.json"


@pytest.mark.parametrize("case", ["sst-2", "sst-2 calibrated", "trec"])
def test_llama_cpp_answers_replayed_give_the_recorded_label_scores(case, tmp_path):
    """Answers llama.cpp's server gave (tests/recordings/record_llama_cpp.py), replayed over
    HTTP: the same requests, the same label scores, predictions and counts."""
    from record_llama_cpp import score

    rec = json.loads(RECORDING.read_text())
    want = rec["expected"][case]
    with ReplayServer(RECORDING) as srv:
        res, doc = score(srv.url, str(tmp_path / "r.db"), case)
    assert doc["model"]["scoring"] == want["scoring"] == "first_token"
    assert res.predictions == want["predictions"] and res.mean == pytest.approx(want["mean"])
    for got, exp in zip(res.label_logprobs, want["label_logprobs"]):
        assert got == pytest.approx(exp, abs=1e-9)
    assert res.extras["first_token"] == want["first_token"]


def test_the_recording_has_labels_outside_the_top_k():
    rec = json.loads(RECORDING.read_text())
    assert rec["expected"]["trec"]["first_token"]["outside_top_k"] > 0
    assert "llama-cpp-python" in rec["server"]


@pytest.mark.parametrize("searcher", ["demos", "mipro", "grips", "gepa"])
def test_searches_run_on_first_token_scores(searcher, tmp_path):
    with ScriptedServer(top=biased, reply=lambda p: "Decide whether the review is positive or negative.") as srv:
        doc = run_search(
            small(n_dev=8),
            model=backend(srv.url, scoring="logprobs"),
            searcher=searcher,
            budget=Budget(max_evals=48),
            harness="calibrate",
            db=str(tmp_path / f"{searcher}.db"),
        )
        label_requests = [r for r in srv.requests if r.get("logprobs")]
    assert doc["model"]["scoring"] == "first_token" and doc["candidates"]
    assert all(r["max_tokens"] == 1 and r["top_logprobs"] == 20 for r in label_requests)
    assert doc["best"]["test"]["n"] == 6
