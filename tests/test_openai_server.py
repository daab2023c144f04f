"""Against a real OpenAI-compatible server: `transformers serve` on the embedded model,
started on 127.0.0.1 by the tests themselves."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time

import pytest
from typer.testing import CliRunner

from promptsearch.candidates import Candidate
from promptsearch.cli import app
from promptsearch.errors import PromptSearchError
from promptsearch.runner import run_eval, run_search
from promptsearch.settings import configure
from promptsearch.tasks.builtin import sentiment
from servers import free_port, start_transformers_serve, stop

pytestmark = pytest.mark.model
runner = CliRunner()


@pytest.fixture(scope="module")
def served(embedded_folder, tmp_path_factory):
    port = free_port()
    proc = start_transformers_serve(embedded_folder, port, tmp_path_factory.mktemp("serve") / "serve.log")
    yield f"http://127.0.0.1:{port}/v1", str(embedded_folder)
    stop(proc)


@pytest.fixture(autouse=True)
def _no_overrides():
    configure()
    yield
    configure()


def small_task(n: int = 6):
    t = sentiment()
    return dataclasses.replace(t, train=t.train[:12], dev=t.dev[:n], test=t.test[:n])


def test_eval_through_the_server_then_from_the_cache(served):
    url, name = served
    args = [
        "eval",
        "--model",
        f"openai:{name}",
        "--base-url",
        url,
        "--split",
        "dev",
        "--limit",
        "8",
        "--prompt",
        "Is this review positive or negative?",
        "--json",
        "--concurrency",
        "4",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["model"] == {
        "kind": "openai",
        "model": f"openai:{name}",
        "api": "chat",
        "server": url,
        "scoring": "generate",
    }
    assert doc["cost"]["calls"] == 8 and doc["cost"]["tokens"] > 8 * 20 and doc["score"]["n"] == 8
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["cost"]["calls"] == 0 and again["cost"]["cache_hits"] == 8
    assert again["examples"] == doc["examples"]


def test_short_ape_search_through_the_server(served):
    url, name = served
    opts = {
        "subsamples": "1",
        "samples_per_subsample": "3",
        "demos": "3",
        "rounds": "1",
        "variations": "1",
        "race_start": "3",
        "max_tokens": "16",
    }
    model = f"openai:{name},api=completions,base_url={url}"
    doc = run_search(small_task(), model=model, searcher="ape", options=opts, baseline_shots=2)
    assert doc["searcher"]["name"] == "ape" and doc["best"]["test"]["n"] == 6
    assert doc["record"]["searcher_notes"]["proposer"]["server"] == url
    notes = doc["record"]["searcher_notes"]
    assert [r["round"] for r in notes["rounds"]] == [0, 1] and notes["rounds"][0]["proposed"] >= 1
    assert doc["cost"]["total"]["calls"] > 0 and doc["candidates"]
    again = run_search(small_task(), model=model, searcher="ape", options=opts, baseline_shots=2)
    assert again["from_cache"] and again["best"] == doc["best"]


def test_wrong_model_name_is_one_line(served):
    url, _ = served
    r = runner.invoke(app, ["eval", "--model", "openai:no-such-model", "--base-url", url, "--limit", "2"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert "rejected a request for model 'no-such-model' (HTTP 400)" in lines[0] and "pinned" in lines[0]


def _gen_rows(db) -> int:
    try:
        with sqlite3.connect(db) as con:
            return con.execute("select count(*) from cacheentry where kind='gen'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_server_stopped_mid_evaluation_then_resumed(embedded_folder, tmp_path, monkeypatch):
    """The server dies after a few answers: the run retries, stops with one clear line, and
    keeps what was answered; with the server back, the same run makes only the missing calls."""
    monkeypatch.setenv("PROMPTSEARCH_MAX_TRIES", "3")
    monkeypatch.setenv("PROMPTSEARCH_RETRY_MAX_WAIT", "0.2")
    monkeypatch.setenv("PROMPTSEARCH_CONCURRENCY", "1")
    port, log, db = free_port(), tmp_path / "serve.log", tmp_path / "fault.db"
    model = f"openai:{embedded_folder},base_url=http://127.0.0.1:{port}/v1"
    task, cand = small_task(12), Candidate(instruction="Is this review positive or negative?", name="p")
    proc = start_transformers_serve(embedded_folder, port, log)
    killed = threading.Event()

    def kill_after_three():
        while not killed.is_set():
            if _gen_rows(db) >= 3:
                stop(proc)
                killed.set()
            time.sleep(0.05)

    threading.Thread(target=kill_after_three, daemon=True).start()
    try:
        with pytest.raises(PromptSearchError) as e:
            run_eval(task, cand, model=model, split="dev", db=str(db))
    finally:
        killed.set()
        if proc.poll() is None:
            stop(proc)
    msg = str(e.value)
    assert "stopped answering" in msg and "after 3 tries" in msg and "run the same command again" in msg
    answered = _gen_rows(db)
    assert 3 <= answered < 12
    proc = start_transformers_serve(embedded_folder, port, log)
    try:
        res, doc = run_eval(task, cand, model=model, split="dev", db=str(db))
    finally:
        stop(proc)
    assert doc["cost"]["calls"] == 12 - answered and doc["cost"]["cache_hits"] == answered
    assert res.n == 12 and _gen_rows(db) == 12
