"""The OpenAI-compatible backend over real HTTP on 127.0.0.1: retries and fail-fast codes,
concurrency, log-probabilities, cost and budgets, dry runs, secrets, and bad input."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time

import pytest
from typer.testing import CliRunner

from promptsearch.backends.base import GenRequest, LoglikRequest
from promptsearch.backends.openai_api import OpenAIBackend
from promptsearch.budget import Budget
from promptsearch.candidates import Candidate
from promptsearch.cli import app
from promptsearch.errors import PromptSearchError
from promptsearch.runner import run_eval, run_search
from promptsearch.selection import Selection
from promptsearch.tasks.builtin import sentiment
from servers import LogprobServer, ScriptedServer

runner = CliRunner()
KEY = "sk-test-TOPSECRET-0123456789"


def backend(url: str, **kw) -> OpenAIBackend:
    # these servers generate and return no log-probabilities: score by generation, as
    # scoring=auto would after its probe (tests/test_first_token.py tests the probe)
    kw = {"concurrency": 1, "max_tries": 3, "retry_max_wait": 0.05, "timeout": 10, "scoring": "generate", **kw}
    return OpenAIBackend("scripted-model", base_url=url, **kw)


def small_sentiment(n_dev: int = 6, n_test: int = 6):
    t = sentiment()
    return dataclasses.replace(t, train=t.train[:12], dev=t.dev[:n_dev], test=t.test[:n_test])


def one_line(result) -> str:
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


# --- retries and failing fast ---------------------------------------------------------------
def test_transient_errors_are_retried_then_answered():
    with ScriptedServer(statuses=[429, 503, 500]) as srv:
        b = backend(srv.url, max_tries=4)
        out = b.generate([GenRequest("Review: fine.\nSentiment:")])
    assert out[0].text == "positive" and len(srv.requests) == 4


def test_retries_are_bounded_and_the_sdk_does_not_add_its_own():
    with ScriptedServer(statuses=[500] * 10) as srv:
        with pytest.raises(PromptSearchError, match="kept failing .*after 3 tries"):
            backend(srv.url, max_tries=3).generate([GenRequest("x")])
        assert len(srv.requests) == 3
        srv.statuses = [503] * 10
        with pytest.raises(PromptSearchError):
            backend(srv.url, max_tries=1).generate([GenRequest("x")])
        assert len(srv.requests) == 4  # one try, no hidden SDK retries


@pytest.mark.parametrize(
    "status,words",
    [
        (401, "rejected the API key"),
        (403, "refused access"),
        (404, "has no model 'scripted-model'"),
        (400, "rejected a request"),
    ],
)
def test_client_errors_fail_at_once(status, words):
    with ScriptedServer(statuses=[status] * 5) as srv:
        with pytest.raises(PromptSearchError, match=words) as e:
            backend(srv.url, api_key=KEY).generate([GenRequest("x")])
        assert len(srv.requests) == 1
    assert KEY not in str(e.value) and "\n" not in str(e.value)


def test_requests_run_concurrently_up_to_the_limit():
    reqs = [GenRequest(f"Review: {i}\nSentiment:") for i in range(12)]
    with ScriptedServer(delay=0.15) as srv:
        t0 = time.perf_counter()
        landed = []
        out = backend(srv.url, concurrency=4).generate(reqs, on_result=lambda i, r: landed.append(i))
        took = time.perf_counter() - t0
    assert srv.max_in_flight == 4 and len(out) == 12 and sorted(landed) == list(range(12))
    assert took < 12 * 0.15 / 2  # sequential would take 1.8 s


def test_stop_strings_and_chat_shape():
    with ScriptedServer(reply=lambda p: "negative\nReview: more") as srv:
        out = backend(srv.url).generate([GenRequest("Review: bad.\nSentiment:", stop=("\n",))])
        body = srv.requests[0]
    assert out[0].text == "negative" and out[0].completion_tokens == 1
    assert body["messages"] == [{"role": "user", "content": "Review: bad.\nSentiment:"}]
    assert body["max_completion_tokens"] == 32 and body["stop"] == ["\n"] and "seed" not in body


# --- log-probabilities ------------------------------------------------------------------------
def test_completions_logprobs_match_the_local_model(tiny_model):
    from promptsearch.backends.hf import HFBackend

    local = HFBackend(str(tiny_model))
    reqs = [
        LoglikRequest("Review: a fine film.\nSentiment:", " positive"),
        LoglikRequest("Review: dull and long.\nSentiment:", " negative"),
        LoglikRequest("Question: 2+2?\nAnswer:", " 4"),
    ]
    with LogprobServer(tiny_model) as srv:
        remote = OpenAIBackend("tiny", api="completions", base_url=srv.url, concurrency=2)
        assert remote.can_loglikelihood
        got = remote.loglikelihood(reqs)
    want = local.loglikelihood(reqs)
    for g, w in zip(got, want):
        assert g.logprob == pytest.approx(w.logprob, abs=1e-3)
        assert g.is_greedy == w.is_greedy


def test_chat_models_classify_by_generating():
    with ScriptedServer(reply=lambda p: "The sentiment is negative.") as srv:
        b = backend(srv.url)
        assert not b.can_loglikelihood and not srv.requests  # chat: no probe needed
        res, doc = run_eval(small_sentiment(), Candidate(name="p"), model=b, split="dev")
    assert res.predictions == ["negative"] * 6 and doc["cost"]["calls"] == 6


def test_a_server_with_logprobs_is_probed_once(tiny_model, tmp_path):
    with LogprobServer(tiny_model) as srv:
        b = OpenAIBackend("tiny", api="completions", base_url=srv.url, concurrency=1)
        res, doc = run_eval(small_sentiment(), Candidate(name="p"), model=b, split="dev", db=str(tmp_path / "p.db"))
        assert srv.count == 1 + 6 * 2  # the probe, then a request per (example, label)
    assert doc["model"]["scoring"] == "loglikelihood" and res.label_logprobs


def test_servers_without_logprobs_are_probed_once(tmp_path):
    with ScriptedServer() as srv:  # completions, but no logprobs in the answer
        b = backend(srv.url, api="completions", scoring="auto")
        res, doc = run_eval(small_sentiment(), Candidate(name="p"), model=b, split="dev")
        assert len(srv.requests) == 1 + 6  # the probe, then generation
        assert res.predictions == ["positive"] * 6
        b2 = backend(srv.url, api="completions", scoring="auto")
        _, doc2 = run_eval(small_sentiment(), Candidate(name="p"), model=b2, split="dev")
        assert doc2["cost"]["calls"] == 0 and len(srv.requests) == 7  # probe answer cached too


# --- cost, budgets, secrets -------------------------------------------------------------------
def test_dollars_and_budgets(tmp_path, monkeypatch):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"scripted-model": {"input": 1000.0, "output": 2000.0}}))
    monkeypatch.setenv("PROMPTSEARCH_PRICES", str(prices))
    from promptsearch.settings import get_settings

    with ScriptedServer() as srv:
        b = backend(srv.url, prices_path=get_settings().prices_path)
        whole = Selection.whole_dev()  # each candidate scored on all 10 dev examples
        doc = run_search(small_sentiment(n_dev=10), model=b, budget=Budget(max_dollars=0.05), selection=whole)
        assert doc["stopped_by"].startswith("dollar budget of $0.0500")
        spent = doc["cost"]["search"]["dollars"]
        assert spent >= 0.05 and doc["cost"]["search"]["calls"] == 10  # one scoring (10 calls) carried it past, no more
        assert doc["cost"]["total"]["unpriced_calls"] == 0
        doc = run_search(small_sentiment(n_dev=10), model=backend(srv.url), budget=Budget(max_tokens=100), db="t.db")
        assert doc["stopped_by"].startswith("token budget of 100 tokens")
        with pytest.raises(PromptSearchError, match="dollar budget needs every model's price"):
            run_search(small_sentiment(n_dev=10), model=backend(srv.url), budget=Budget(max_dollars=1), db="u.db")


def test_the_key_is_sent_but_never_stored_or_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with ScriptedServer() as srv:
        r = runner.invoke(
            app,
            [
                "run",
                "--model",
                "openai:scripted-model",
                "--base-url",
                srv.url,
                "--json",
                "--searcher",
                "baseline",
                "--db",
                str(tmp_path / "k.db"),
            ],
        )  # any run sends the key
        assert r.exit_code == 0, r.output
        sent = {k.lower(): v for k, v in srv.headers_seen[0].items()}
        assert sent["authorization"] == f"Bearer {KEY}"
    assert "TOPSECRET" not in r.output
    for f in tmp_path.glob("k.db*"):
        assert b"TOPSECRET" not in f.read_bytes()
    assert "TOPSECRET" not in repr(backend(srv.url, api_key=KEY))


# --- dry runs ---------------------------------------------------------------------------------
def test_dry_run_plans_exactly_what_a_run_makes(fake_backend_registered, tmp_path):
    # baseline: a schedule that does not depend on the answers, so the plan is exact (a race's
    # winners, and so the finalists, depend on the scores the stand-in cannot know)
    args = ["run", "--model", "fake:x", "--searcher", "baseline", "--json"]
    plan = json.loads(runner.invoke(app, [*args, "--dry-run"]).stdout)
    assert plan["schema"] == "promptsearch.plan/1" and plan["dollars"] == 0
    assert not fake_backend_registered[0].requests  # nothing reached the model
    assert "No runs" in runner.invoke(app, ["runs"]).output
    doc = json.loads(runner.invoke(app, args).stdout)
    # the dev check of the finalists re-reads answers the search made: the cache's, in both
    assert plan["calls"] == doc["cost"]["total"]["calls"] and plan["cached"] == doc["cost"]["total"]["cache_hits"] > 0
    again = json.loads(runner.invoke(app, [*args, "--dry-run"]).stdout)
    assert again["calls"] == 0 and again["cached"] == doc["cost"]["total"]["calls"] + doc["cost"]["total"]["cache_hits"]


def test_dry_run_prices_an_api_model_without_contacting_it(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    r = runner.invoke(
        app,
        [
            "run",
            "--model",
            "openai:gpt-4o-mini",
            "--searcher",
            "ape",
            "--dry-run",
            "--base-url",
            "http://127.0.0.1:9/v1",
        ],
    )  # nothing listens there
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "Planned:" in text and "estimated cost $0.0" in text and "Nothing was computed" in text


# --- bad input: one line each -----------------------------------------------------------------
def test_bad_input_is_one_line(monkeypatch):
    line = one_line(runner.invoke(app, ["eval", "--model", "openai:gpt-4o-mini", "--limit", "2"]))
    assert "needs OPENAI_API_KEY" in line
    monkeypatch.setenv("PROMPTSEARCH_MAX_TRIES", "2")
    monkeypatch.setenv("PROMPTSEARCH_RETRY_MAX_WAIT", "0.05")
    line = one_line(
        runner.invoke(app, ["eval", "--model", "openai:m", "--base-url", "http://127.0.0.1:9/v1", "--limit", "2"])
    )
    assert "Cannot reach http://127.0.0.1:9/v1" in line and "connection refused" in line
    line = one_line(runner.invoke(app, ["eval", "--model", "openai:m", "--base-url", "localhost:8000", "--limit", "2"]))
    assert "not an http(s) URL" in line
    line = one_line(runner.invoke(app, ["eval", "--model", "openai:m,api=rest", "--base-url", "http://127.0.0.1:9/v1"]))
    assert "api='rest' must be chat or completions" in line
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with ScriptedServer(statuses=[401]) as srv:
        r = runner.invoke(app, ["eval", "--model", "openai:m", "--base-url", srv.url, "--limit", "2"])
    line = one_line(r)
    assert "rejected the API key (401" in line and "TOPSECRET" not in r.output


def test_an_interrupted_call_keeps_every_answer(tmp_path):
    """Answers land in the cache as they arrive: a failure half-way keeps the first half."""
    db = tmp_path / "half.db"
    with ScriptedServer(statuses=[200] * 4 + [500] * 50) as srv:
        with pytest.raises(PromptSearchError):
            run_eval(
                small_sentiment(), Candidate(name="p"), model=backend(srv.url, max_tries=2), split="dev", db=str(db)
            )
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from cacheentry where kind='gen'").fetchone()[0] == 4


def test_api_proposer_with_a_local_target_counts_both(tmp_path, monkeypatch):
    """Mixed setup: an OpenAI-compatible model writes APE's instructions, a local model is
    scored; the proposer's calls, tokens and dollars count in the run's cost."""
    from fakes import FakeBackend

    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"writer": {"input": 1.0, "output": 1.0}}))
    monkeypatch.setenv("PROMPTSEARCH_PRICES", str(prices))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    replies = iter(f"State the writer's opinion of the film, variant {i}." for i in range(1000))
    with ScriptedServer(reply=lambda p: next(replies)) as srv:
        opts = {
            "proposer": f"openai:writer,base_url={srv.url}",
            "subsamples": "2",
            "samples_per_subsample": "2",
            "rounds": "1",
            "variations": "1",
        }
        target = FakeBackend()
        doc = run_search(small_sentiment(n_dev=8), model=target, searcher="ape", options=opts)
        proposer_calls = len(srv.requests)
    notes = doc["record"]["searcher_notes"]
    assert notes["proposer"]["kind"] == "openai" and notes["chat_form"]
    assert srv.requests[0]["messages"][0]["content"].startswith(
        "Each output below was written"
    )  # chat-form meta-prompt
    assert "opinion" in doc["best"]["prompt"]  # the fake target rewards "opinion"
    assert proposer_calls == 4 + 1  # 2 demo sets x 2 samples, then the top quarter (1) reworded once
    search = doc["cost"]["search"]
    assert search["calls"] == (
        proposer_calls + len(target.requests) - doc["cost"]["test"]["calls"] - doc["cost"]["selection"]["calls"]
    )
    assert search["dollars"] > 0 and search["unpriced_calls"] == 0


def test_ctrl_c_during_concurrent_requests_returns_promptly():
    """An interrupt while requests are in flight stops retries and closes the connections,
    so the command exits without waiting for slow answers."""
    import os
    import signal
    import threading

    reqs = [GenRequest(f"Review: {i}\nSentiment:") for i in range(8)]
    # Python's own handler, which a shell replaces with "ignore" for background jobs and nohup
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with ScriptedServer(delay=3.0) as srv:
            b = backend(srv.url, concurrency=4)
            timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))  # a real Ctrl-C
            timer.start()
            t0 = time.perf_counter()
            with pytest.raises(KeyboardInterrupt):
                b.generate(reqs)
            took = time.perf_counter() - t0
    finally:
        signal.signal(signal.SIGINT, previous)
    assert took < 2.0 and len(srv.requests) <= 4  # nothing new started after the interrupt
