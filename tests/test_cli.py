"""Every command through typer's CliRunner, on the scripted fake backend."""

import json
import subprocess
import sys

import pytest
from clitools import invoke, one_line_error
from typer.testing import CliRunner

from promptsearch.cli import app

runner = CliRunner()


def test_run_table_and_cache_message(fake_backend_registered, tmp_path):
    r = invoke("run", "--model", "fake:x")
    assert r.exit_code == 0, r.output
    assert "Best prompt" in r.output and "manual-1" in r.output and "Stored as run" in r.output
    assert "95% CI" in r.output
    r2 = invoke("run", "--model", "fake:x")
    assert "0 model calls" in r2.output and "Everything came from the cache" in r2.output


def test_run_json_schema(fake_backend_registered):
    r = invoke("run", "--model", "fake:x", "--json", "-o", "shots=2", "--seed", "1")
    doc = json.loads(r.stdout)
    assert doc["schema"] == "promptsearch.run/1" and doc["searcher"]["config"]["shots"] == 2
    assert {"run_id", "task", "model", "best", "baselines", "candidates", "cost", "record", "db"} <= set(doc)


def test_eval_prompt_and_file(fake_backend_registered, tmp_path):
    r = invoke("eval", "--model", "fake:x", "--prompt", "Give the writer's opinion.", "--json")
    doc = json.loads(r.stdout)
    assert doc["schema"] == "promptsearch.eval/1" and doc["score"]["mean"] == 1.0
    assert len(doc["examples"]) == doc["score"]["n"]
    f = tmp_path / "p.txt"
    f.write_text("Nothing useful.\n")
    r = invoke("eval", "--model", "fake:x", "--prompt-file", str(f), "--split", "dev", "--limit", "10")
    assert r.exit_code == 0 and "accuracy" in r.output and "on 10 examples" in r.output


def test_listing_commands(fake_backend_registered):
    r = invoke("tasks")
    assert "sentiment" in r.output and "228" not in r.output and "46/66/116" in r.output
    r = invoke("searchers")
    assert "baseline" in r.output and "shots" in r.output
    assert "No runs" in invoke("runs").output
    run = json.loads(invoke("run", "--model", "fake:x", "--json").stdout)
    listing = invoke("runs")
    assert run["run_id"][-4:] in listing.output
    shown = invoke("show", run["run_id"])
    assert shown.exit_code == 0 and "Task hash" in shown.output
    assert json.loads(invoke("show", run["run_id"], "--json").stdout) == run
    stats = invoke("cache", "stats")
    assert "fake:scripted" in stats.output
    assert "Deleted" in invoke("cache", "clear").output
    assert "0 entries" in invoke("cache", "stats").output


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--task", "nope"], "Unknown task 'nope'"),
        (["run", "--searcher", "basline"], "Did you mean: baseline?"),
        (["run", "--model", "nope:x"], "Unknown backend 'nope'"),
        (["run", "--model", "fake:x", "--scorer", "acc"], "Unknown scorer 'acc'"),
        (["run", "--model", "fake:x", "-o", "shots"], "must look like key=value"),
        (["run", "--model", "fake:x", "-o", "shot=2"], "Did you mean: shots?"),
        (["run", "--task", "missing.jsonl"], "does not exist"),
        (["show", "nope"], "no such run"),
        (["eval", "--model", "fake:x", "--prompt-file", "nope.txt"], "Cannot read prompt file"),
    ],
)
def test_bad_input_is_one_line_exit_2(fake_backend_registered, args, message):
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "Traceback" not in r.output + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_task_file_and_db_leave_nothing_written(fake_backend_registered, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label":}\n')
    db = tmp_path / "runs.db"
    r = invoke("run", "--task", str(bad), "--model", "fake:x", "--db", str(db))
    assert r.exit_code == 2 and "bad.jsonl:2: invalid JSON" in r.stderr
    assert not db.exists()
    r = invoke("run", "--model", "fake:x", "--db", str(tmp_path))
    assert r.exit_code == 2 and "is a folder" in r.stderr


def test_ctrl_c_is_a_clean_exit(monkeypatch, fake_backend_registered):
    import promptsearch.runner as runner_mod

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_mod, "run_search", interrupted)
    r = invoke("run", "--model", "fake:x")
    assert r.exit_code == 130 and "run the same command again to resume" in r.stderr


def test_help_imports_no_torch():

    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "promptsearch.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "Automatic prompt search" in out.stdout
    assert " torch" not in out.stderr and "transformers" not in out.stderr


def test_names_that_match_nothing_are_one_line_exit_2(fake_backend_registered):
    assert runner.invoke(app, ["run", "--model", "fake:x"]).exit_code == 0
    res = runner.invoke(app, ["runs", "--task", "sentimnt"])
    assert (
        res.exit_code == 2 and "No runs of task 'sentimnt'" in res.output and "Did you mean: sentiment?" in res.output
    )
    assert len(res.output.strip().splitlines()) == 1
    res = runner.invoke(app, ["cache", "clear", "--model", "fake:scriptd"])
    assert res.exit_code == 2 and "nothing deleted" in res.output and "Did you mean: fake:scripted?" in res.output
    assert runner.invoke(app, ["cache", "clear", "--model", "fake:scripted"]).exit_code == 0
    res = runner.invoke(app, ["eval", "--task", "sentiment", "--model", "fake:x"])
    assert res.exit_code == 0 and "No --prompt given: scored the empty prompt" in res.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--harness", "fewshot:k=1000"], "asks for 1000 demos, but task 'sentiment' has 46"),
        (["eval", "--limit", "-1"], "Invalid value for '--limit'"),
        (["eval", "--limit", "0"], "Invalid value for '--limit'"),
        (["run", "--shots", "-3"], "Invalid value for '--shots'"),
        (["run", "--max-calls", "-1"], "Invalid value for '--max-calls'"),
        (["run", "--max-seconds", "-5"], "Invalid value for '--max-seconds'"),
    ],
)
def test_out_of_range_values_are_refused(fake_backend_registered, args, message):
    assert message in one_line_error(invoke(*args, "--model", "fake:x"))
