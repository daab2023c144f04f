"""What a new user meets first: honest winners, ranked candidates with their n, method
options in leaderboard rows, interrupted runs listed and removed, answers kept when a run
is killed, and no file from a run that stored nothing."""

import json
import os
import signal
import subprocess
import sys
import time

from typer.testing import CliRunner

from fakes import FakeBackend
from promptsearch import search
from promptsearch.candidates import Candidate
from promptsearch.cli import app
from promptsearch.records import rank_candidates
from promptsearch.searchers.base import Outcome, Searcher
from promptsearch.store import Store
from promptsearch.store.cache import CachedBackend
from promptsearch.tasks.loaders import load_task

runner = CliRunner()


class Scripted(Searcher):
    """Scores the candidates it is given, each on the first n dev examples, and returns the
    first as its best (a searcher that got it wrong, or a race that stopped early)."""

    name = "scripted"

    def __init__(self, plan: list[tuple[Candidate, int | None]]):
        super().__init__()
        self.plan = plan

    def search(self, task, evaluator, context):
        first = None
        for cand, n in self.plan:
            r = evaluator.score(cand, task.dev[:n])
            first = first or r
        return Outcome(first.candidate, first.mean)


def test_a_search_worse_than_a_baseline_on_dev_returns_the_baseline_and_says_so(tmp_path):
    db = str(tmp_path / "w.db")
    worse = Candidate(instruction="Say a word.", name="worse-1")  # the fake says "negative": half right
    doc = search("sentiment", model=FakeBackend(), searcher=Scripted([(worse, None)]), db=db)
    dev_n = len(load_task("sentiment").dev)
    assert doc["best"]["picked"] == "baseline" and doc["best"]["name"] == "manual-1"
    assert doc["best"]["dev"] == {"mean": 1.0, "stderr": 0.0, "n": dev_n}
    sb = doc["search_best"]
    assert sb["name"] == "worse-1" and sb["dev"]["mean"] < 1.0 and sb["test"]["mean"] < doc["best"]["test"]["mean"]
    assert sb["picked_minus_it"]["diff"] > 0
    # every baseline has its dev score, on the whole dev split
    assert all(b["dev"]["n"] == dev_n for b in doc["baselines"])
    assert Store(db).get_run(doc["run_id"]).best_name == "manual-1"
    shown = " ".join(runner.invoke(app, ["show", doc["run_id"], "--db", db]).output.split())
    assert "The search did not beat the baseline on dev" in shown and "returns the baseline" in shown
    assert f"1.000 ({dev_n})" in shown and "search's best: worse-1" in shown
    html = tmp_path / "w.html"
    assert runner.invoke(app, ["report", doc["run_id"], "--db", db, "--output", str(html)]).exit_code == 0
    assert "id='picked-baseline'" in html.read_text()


def test_a_search_that_beats_the_baselines_keeps_its_best(tmp_path):
    good = Candidate(instruction="Give the writer's opinion of it.", name="good-1")
    doc = search("sentiment", model=FakeBackend(), searcher=Scripted([(good, None)]), db=str(tmp_path / "g.db"))
    # a tie on dev with manual-1 (both always right) keeps the search's own best
    assert doc["best"]["picked"] == "search" and doc["best"]["name"] == "good-1"


def test_candidates_rank_by_dev_examples_scored_then_score_and_carry_n(tmp_path):
    lucky = Candidate(instruction="Short lucky guess.", name="lucky")  # scored on 2 dev examples only
    full = Candidate(instruction="Give the writer's opinion.", name="full")
    task = load_task("sentiment")
    doc = search(
        "sentiment", model=FakeBackend(), searcher=Scripted([(lucky, 2), (full, None)]), db=str(tmp_path / "r.db")
    )
    names = [c["name"] for c in doc["candidates"]]
    assert names == ["full", "lucky"]  # the whole dev split outranks 2 examples, whatever their mean
    assert [c["dev_n"] for c in doc["candidates"]] == [len(task.dev), 2]
    assert rank_candidates([{"dev_mean": 1.0, "dev_n": 8}, {"dev_mean": 0.88, "dev_n": 66}])[0]["dev_n"] == 66
    out = " ".join(runner.invoke(app, ["show", doc["run_id"], "--db", str(tmp_path / "r.db")]).output.split())
    assert "ranked by dev examples scored" in out


def test_soft_runs_of_two_methods_are_two_leaderboard_rows_and_runs_name_them(tiny_model, tmp_path):
    db = str(tmp_path / "s.db")
    for method in ("prompt", "prefix"):
        res = runner.invoke(
            app,
            [
                "run",
                "--task",
                "sentiment",
                "--model",
                f"hf:{tiny_model}",
                "--searcher",
                "soft",
                "-o",
                f"method={method}",
                "-o",
                "steps=1",
                "-o",
                "eval_every=1",
                "--shots",
                "0",
                "--db",
                db,
                "--json",
            ],
        )
        assert res.exit_code == 0, res.output
    board = json.loads(runner.invoke(app, ["leaderboard", "--format", "json", "--db", db]).stdout)
    rows = sorted(r["searcher"] for r in board["rows"])
    assert rows == ["soft", "soft (method=prefix)"]  # options at their defaults are not spelled out
    listing = runner.invoke(app, ["runs", "--db", db], env={"COLUMNS": "200"}).output
    assert "soft (method=prefix)" in listing and "soft " in listing


def test_a_budget_stopped_soft_search_still_scores_its_readout_on_dev(tiny_model, tmp_path):
    dev_n = len(load_task("sentiment").dev)
    res = runner.invoke(
        app,
        [
            "run",
            "--task",
            "sentiment",
            "--model",
            f"hf:{tiny_model}",
            "--searcher",
            "soft",
            "-o",
            "steps=4",
            "-o",
            "eval_every=1",
            "--shots",
            "0",
            "--max-evals",
            str(dev_n),
            "--db",
            str(tmp_path / "b.db"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert "budget" in doc["stopped_by"]
    assert isinstance(doc["record"]["searcher_notes"]["readout"]["dev"], float)


def test_runs_lists_interrupted_runs_and_clean_removes_them(tmp_path, fake_backend_registered):
    db = tmp_path / "c.db"
    assert runner.invoke(app, ["run", "--model", "fake:x", "--db", str(db)]).exit_code == 0
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "c.db.checkpoints" / "20261203-120000-abcd"
    stale.mkdir(parents=True)
    (stale / "run.json").write_text(
        json.dumps({"searcher": "rl", "task": "sentiment", "pid": int(gone.stdout), "started": time.time()})
    )
    (stale / "checkpoint-2").mkdir()
    (stale / "checkpoint-2" / "weights.bin").write_bytes(b"\0" * 2_000_000)
    live = tmp_path / "c.db.checkpoints" / "20261203-120500-ef01"  # a run in progress is not listed
    live.mkdir()
    (live / "run.json").write_text(json.dumps({"searcher": "rl", "task": "sentiment", "pid": os.getppid()}))
    out = " ".join(runner.invoke(app, ["runs", "--db", str(db)], env={"COLUMNS": "200"}).output.split())
    assert "1 interrupted run" in out and "20261203-120000-abcd" in out and "2.0 MB" in out
    assert "ef01" not in out and "runs --clean" in out
    res = runner.invoke(app, ["runs", "--clean", "--db", str(db)])
    assert res.exit_code == 0 and "Removed the checkpoints of 1 interrupted run" in res.output
    assert not stale.exists() and live.exists() and Store(db).get_run(Store(db).runs(None, 1)[0].id)


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
