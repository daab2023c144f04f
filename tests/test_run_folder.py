"""A checkpointing run's folder: made for the run, removed when it finishes or fails before
checkpointing anything, listed by `runs` only when no live process owns it, and resumable
only when it holds the arguments that resume it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from fakes import FakeBackend
from promptsearch import registry
from promptsearch.cli import app
from promptsearch.errors import PromptSearchError
from promptsearch.runfolder import checkpoint_root, interrupted_runs
from promptsearch.runner import run_search
from promptsearch.store import Store
from promptsearch.tasks import load_task

runner = CliRunner()


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setitem(registry.backends._entries, "fake", lambda spec, settings: FakeBackend())


def test_a_run_that_fails_before_it_checkpoints_leaves_nothing_to_resume(tmp_path, fake, monkeypatch):
    db = str(tmp_path / "f.db")
    bad = runner.invoke(app, ["run", "--model", "fake:x", "--searcher", "gepa", "-o", "proposer=nosuch:x", "--db", db])
    assert bad.exit_code == 2 and "Traceback" not in bad.output, bad.output
    monkeypatch.setitem(sys.modules, "gepa", None)  # the extra is missing
    missing = runner.invoke(app, ["run", "--model", "fake:x", "--searcher", "gepa", "--db", db])
    assert missing.exit_code == 2 and "pip install 'promptsearch[gepa]'" in missing.output
    spent = runner.invoke(app, ["run", "--model", "fake:x", "--searcher", "mipro", "--max-calls", "1", "--db", db])
    assert spent.exit_code == 2
    root = checkpoint_root(db)
    assert not root.exists() or not list(root.iterdir())
    listing = runner.invoke(app, ["runs", "--db", db])
    assert "interrupted" not in listing.output and "resume" not in listing.output


def test_a_run_in_progress_is_not_listed_as_interrupted(tmp_path):
    db = str(tmp_path / "p.db")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for name, pid in (("20260101-000000-aaaa", live.pid), ("20260101-000000-bbbb", 999_999_999)):
            folder = checkpoint_root(db) / name
            folder.mkdir(parents=True)
            (folder / "run.json").write_text(
                json.dumps({"task": "sentiment", "searcher": "rl", "pid": pid, "started": 0, "resumable": True})
            )
        assert [r.run_id for r in interrupted_runs(db)] == ["20260101-000000-bbbb"]  # the dead one only
    finally:
        live.kill()


def test_a_run_started_with_a_loaded_task_is_listed_but_not_offered_for_resume(tmp_path):
    db = str(tmp_path / "l.db")

    class Stops(FakeBackend):
        def loglikelihood(self, requests, soft_prompt=None):
            if len(self.requests) > 200:
                raise KeyboardInterrupt
            return super().loglikelihood(requests, soft_prompt)

    with pytest.raises(KeyboardInterrupt):
        run_search(load_task("sentiment"), model=Stops(), searcher="mipro", options={"trials": "30"}, db=db)
    (stale,) = interrupted_runs(db)
    assert not stale.resumable and stale.task == "sentiment" and stale.searcher == "mipro"
    listing = " ".join(runner.invoke(app, ["runs", "--db", db]).output.split())
    assert "mipro on sentiment" in listing and "cannot be resumed" in listing and "--resume" not in listing, listing
    with pytest.raises(PromptSearchError, match="cannot be resumed from there"):
        run_search("sentiment", resume=stale.run_id, db=db)


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
