import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from clitools import invoke
from typer.testing import CliRunner

from fakes import FakeBackend
from promptsearch import Candidate, search
from promptsearch.backends.base import GenRequest, LoglikRequest
from promptsearch.cli import app
from promptsearch.errors import PromptSearchError
from promptsearch.evaluation import Evaluator
from promptsearch.store import CachedBackend, Store
from promptsearch.store.cache import request_key
from promptsearch.tasks import load_task


def test_cache_hits_and_key_contents(db):
    store = Store(db)
    fake = FakeBackend()
    cb = CachedBackend(fake, store)
    reqs = [LoglikRequest("Review: ok\nSentiment:", " positive"), LoglikRequest("Review: ok\nSentiment:", " negative")]
    first = cb.loglikelihood(reqs)
    again = cb.loglikelihood(reqs + reqs)  # duplicates in one batch are asked once
    assert [r.logprob for r in again] == [r.logprob for r in first] * 2
    assert len(fake.requests) == 2 and cb.usage.calls == 2 and cb.usage.cache_hits == 4
    # every decoding parameter and the sample index are part of the key
    g = [GenRequest("p", temperature=0.7, sample_index=i) for i in range(3)] + [
        GenRequest("p", temperature=0.7, top_p=0.9)
    ]
    cb.generate(g)
    assert len(fake.requests) == 2 + 4
    cb.generate(g)
    assert len(fake.requests) == 6
    # greedy decoding ignores seed and sample index, so those share one entry
    cb.generate([GenRequest("q", sample_index=i, seed=i) for i in range(3)])
    assert len(fake.requests) == 7
    ident = fake.identity()
    assert request_key(ident, "gen", {"a": 1}) != request_key({**ident, "revision": "2"}, "gen", {"a": 1})


def test_errors_are_never_cached(db):
    store = Store(db)
    cb = CachedBackend(FakeBackend(fail_after=0, exc=RuntimeError("server down")), store)
    with pytest.raises(RuntimeError):
        cb.loglikelihood([LoglikRequest("x", " y")])
    assert store.cache_stats() == []


def test_interrupted_evaluation_keeps_the_cache_and_resumes(db):
    task = load_task("sentiment")
    store = Store(db)
    fake = FakeBackend(fail_after=2 * 64 + 10)  # dies during the second chunk of 64 examples
    ev = Evaluator(task, CachedBackend(fake, store))
    with pytest.raises(KeyboardInterrupt):
        ev.score(Candidate(), task.test)
    assert sum(r["entries"] for r in store.cache_stats()) == 2 * 64  # the first chunk, whole
    fresh = FakeBackend()
    res = Evaluator(task, CachedBackend(fresh, store)).score(Candidate(), task.test)
    assert len(fresh.requests) == 2 * (len(task.test) - 64)  # only the missing calls
    assert res.cost.cache_hits == 2 * 64 and res.n == len(task.test)


def test_bad_db_paths(tmp_path):
    with pytest.raises(PromptSearchError, match="is a folder"):
        Store(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_text("this is not a database " * 100)
    with pytest.raises(PromptSearchError, match="Cannot use database"):
        Store(junk)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os

        if os.geteuid() != 0:  # root ignores permissions
            with pytest.raises(PromptSearchError):
                Store(ro / "sub" / "x.db")
    finally:
        ro.chmod(0o700)


def test_two_processes_write_one_db(tmp_path):
    db = tmp_path / "shared.db"
    Store(db)
    script = textwrap.dedent(f"""
        import sys, time
        from promptsearch.store import Store
        from promptsearch.store.models import Run, CandidateRow, TestResult
        s = Store({str(db)!r})
        who = sys.argv[1]
        for i in range(150):
            row = dict(backend="b", kind="loglik", request="{{}}", response="{{}}")
            s.cache_put([dict(row, key=f"{{who}}-{{i}}-{{j}}") for j in range(5)])
            s.cache_put([dict(key=f"common-{{i}}", backend="b", kind="loglik", request="{{}}", response="{{}}")])
        for i in range(20):
            s.save_run(Run(id=f"{{who}}-{{i}}", created=time.time(), task="t", task_hash="h", searcher="s", model="m"),
                       [CandidateRow(run_id=f"{{who}}-{{i}}", step=0, name="c", text="t", candidate="{{}}")],
                       [TestResult(run_id=f"{{who}}-{{i}}", candidate="c", example_id="e", score=1.0, prediction="p")])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, w]) for w in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    store = Store(db)
    assert sum(r["entries"] for r in store.cache_stats()) == 2 * 150 * 5 + 150
    assert len(store.runs(limit=100)) == 40


def test_cache_clear(db):
    store = Store(db)
    cb = CachedBackend(FakeBackend(), store)
    cb.loglikelihood([LoglikRequest("a", " b")])
    assert store.cache_clear("other:model") == 0
    assert store.cache_clear() == 1 and store.cache_stats() == []


def test_api_keys_are_not_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    store = Store(tmp_path / "c.db")
    CachedBackend(FakeBackend(), store).loglikelihood([LoglikRequest("a", " b")])
    assert b"sk-secret-123" not in (tmp_path / "c.db").read_bytes()


runner = CliRunner()


def test_a_killed_run_keeps_the_answers_it_had_and_the_rerun_reads_them(tiny_model, tmp_path):
    """SIGKILL during APE's induction (one long generation call): the cache holds what had
    finished, and the same command run again answers that much from the cache."""
    db = tmp_path / "k.db"
    args = [
        "run",
        "--task",
        "sentiment",
        "--model",
        f"hf:{tiny_model}",
        "--searcher",
        "ape",
        "-o",
        "subsamples=40",
        "-o",
        "samples_per_subsample=4",
        "-o",
        "max_tokens=24",
        "-o",
        "rounds=0",
        "--shots",
        "0",
        "--db",
        str(db),
    ]
    # 16 sequences decoded at once: the 160 generations finish in waves, so a kill lands between them
    proc = subprocess.Popen(
        [sys.executable, "-m", "promptsearch.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PROMPTSEARCH_GEN_SLOTS": "16"},
    )
    import sqlite3

    def gen_rows() -> int:
        try:
            with sqlite3.connect(db, timeout=5) as con:
                return con.execute("select count(*) from cacheentry where kind = 'gen'").fetchone()[0]
        except sqlite3.Error:
            return 0

    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and gen_rows() == 0:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = gen_rows()
    assert proc.returncode == -signal.SIGKILL and 0 < kept < 160  # killed mid-way through the 160 generations
    assert not Store(db).runs(None, 10)  # nothing half-written: no run stored
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["cost"]["search"]["cache_hits"] >= kept


def test_a_run_that_stores_nothing_leaves_no_database_file(tmp_path):
    class Probing(FakeBackend):
        """A server backend that answers the capability probe, then fails every request."""

        def probe_loglikelihood(self):
            return True

        def loglikelihood(self, requests, soft_prompt=None):
            from promptsearch.errors import PromptSearchError

            raise PromptSearchError("the server said 404: no such model")

    db = tmp_path / "none.db"
    be = CachedBackend(Probing(), Store(db))
    assert be.can_loglikelihood
    res = None
    try:
        search("sentiment", model=be, db=str(db))
    except Exception as e:  # noqa: BLE001 - the failure is the point
        res = e
    assert res is not None and "404" in str(res)
    assert not db.exists()


def test_an_unusable_database_path_is_refused_before_any_model_is_prepared(tmp_path, monkeypatch):
    fresh = tmp_path / "models"  # the embedded model would be prepared (converted) here
    monkeypatch.setenv("PROMPTSEARCH_MODEL_DIR", str(fresh))
    for args in (
        ["eval", "--task", "sentiment", "--prompt", "x", "--db", "/proc/x.db"],
        ["run", "--task", "sentiment", "--db", "/proc/x.db"],
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "Cannot create database '/proc/x.db'" in res.output
        assert len(res.output.strip().splitlines()) == 1
    assert not fresh.exists()


def test_four_processes_start_on_a_fresh_database_at_once(tmp_path):
    db = tmp_path / "fresh.db"
    code = (
        "import sys; from promptsearch.store.db import Store; s = Store(sys.argv[1]); "
        "s.cache_put([dict(key=sys.argv[2], backend='b', kind='gen', request='{}', response='{}', n_tokens=1)]); "
        "print(len(s.cache_get([sys.argv[2]])))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(db), f"k{i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e for _, e in outs]
    assert [o.strip() for o, _ in outs] == ["1"] * 4


def test_failing_commands_dry_runs_and_reads_leave_no_database(fake_backend_registered, tmp_path):
    db = tmp_path / "none.db"
    invoke("run", "--task", "nope", "--model", "fake:x", "--db", str(db))
    invoke("run", "--model", "fake:x", "--dry-run", "--db", str(db))
    for args in (["runs"], ["cache", "stats"], ["leaderboard"], ["show", "abc"]):
        invoke(*args, "--db", str(db))
    assert not db.exists() and not list(tmp_path.glob("none.db*"))
