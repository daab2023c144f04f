"""`promptsearch sweep`: a grid of ordinary runs on a tiny model, through local worker
processes and a local Ray; reruns skip finished trials; a worker killed mid-trial is retried
and finishes from the cache; bad specs are one line."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptsearch.cli import app
from promptsearch.errors import PromptSearchError
from promptsearch.selection import Selection
from promptsearch.store import Store
from promptsearch.sweep.executors import LocalExecutor, RayExecutor
from promptsearch.sweep.run import run_sweep
from promptsearch.sweep.spec import load_spec
from promptsearch.sweep.table import collect, markdown
from promptsearch.sweep.worker import run_arguments

runner = CliRunner()


def write_spec(tmp_path, tiny_model, **extra) -> str:
    doc = {
        "name": "tiny",
        "tasks": ["sentiment"],
        "models": [f"hf:{tiny_model}"],
        "searchers": ["baseline", {"name": "demos", "options": {"sets": 2, "shots": 2}}],
        "seeds": [0, 1],
        "budget": {"max_evals": 400},
        **extra,
    }
    path = tmp_path / "spec.yaml"
    import yaml

    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_local_sweep_runs_the_grid_and_a_rerun_skips_finished_trials(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    spec = write_spec(tmp_path, tiny_model, seeds=[0])
    db = str(tmp_path / "s.db")
    out = tmp_path / "table.md"
    r = runner.invoke(app, ["sweep", spec, "--workers", "2", "--db", db, "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "2 of 2 trials done" in r.output and "| searcher | sentiment |" in r.output
    assert "| baseline |" in r.output and "| demos |" in r.output
    assert out.exists() and out.with_suffix(".png").exists()
    store = Store(db)
    assert len(store.runs()) == 2  # each trial an ordinary run
    again = runner.invoke(app, ["sweep", spec, "--db", db])
    assert again.exit_code == 0 and "2 had finished in an earlier sweep and were skipped" in again.output
    assert len(store.runs()) == 2  # nothing ran again


def test_a_killed_worker_is_retried_and_finishes_from_the_cache(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    spec = load_spec(write_spec(tmp_path, tiny_model, seeds=[0], searchers=[{"name": "demos", "options": {"sets": 4}}]))
    db = str(tmp_path / "k.db")
    store = Store(db)
    events, killed = [], []

    def on_change(progress, trial, kind, info):
        events.append(kind)
        if kind == "phase" and "test examples" in str(info) and not killed:  # the search is done and cached
            os.kill(progress_pid[0], signal.SIGKILL)
            killed.append(True)

    progress_pid = []
    real_run = LocalExecutor.run

    def run(self, spec_, trials, db_, on_event):
        def spy(trial, kind, info):
            if kind == "start":
                progress_pid[:] = [info]
            on_event(trial, kind, info)

        return real_run(self, spec_, trials, db_, spy)

    monkeypatch.setattr(LocalExecutor, "run", run)
    rows, _ = run_sweep(spec, store, LocalExecutor(1), db, on_change)
    row = next(iter(rows.values()))
    assert killed and "retry" in events and row.status == "done" and row.attempts == 2
    doc = json.loads(store.get_run(row.run_id).result)
    assert (
        doc["cost"]["search"]["calls"] == 0 and doc["cost"]["search"]["cache_hits"] > 0
    )  # the first attempt's answers


def test_bad_specs_are_one_line(tmp_path, tiny_model):
    cases = [
        ({"searchers": ["apee"]}, "Did you mean: ape"),
        ({"searchers": [{"name": "demos", "options": {"shots": 0}}]}, "must be >= 1"),
        ({"searchers": [{"name": "demos", "options": {"colour": "red"}}]}, "Unknown option 'colour'"),
        ({"seeds": []}, "'seeds' is empty"),
        ({"tasks": []}, "'tasks' is empty"),
        ({"budgets": {}}, "unknown key 'budgets'. Did you mean: budget?"),
        ({"harnesses": ["fewshot:k=x"]}, ""),
        ({"grids": [{"resources": {"num_cpus": 2}}]}, "grid 1: unknown key 'resources'"),
        (
            {"searchers": [{"name": "demos", "option": {"shots": 8}}]},
            "searcher 1: unknown key 'option'. Did you mean: options?",
        ),
        ({"budget": {"max_call": 5}}, "budget: unknown key 'max_call'. Did you mean: max_calls?"),
        ({"resources": {"num_cpu": 2}}, "resources: unknown key 'num_cpu'. Did you mean: num_cpus?"),
        ({"harnesses": ["calibrate+calibrate"]}, "names 'calibrate' twice"),
        ({"grids": "baseline"}, "'grids' must be a list of mappings"),
        ({"tasks": [{"task": "sentiment", "instruction": "x"}]}, "unknown key 'instruction'"),
        ({"tasks": [{"task": "sentiment", "test_sample": 0}]}, "'test_sample' must be a whole number >= 1"),
        ({"baseline_shots": -1}, "'baseline_shots' must be a whole number >= 0"),
        ({"selection": {"gates": 0.9}}, "selection: unknown key 'gates'. Did you mean: gate?"),
        ({"selection": {"gate": 2}}, "not in [0.5, 1)"),
    ]
    for extra, says in cases:
        spec = write_spec(tmp_path, tiny_model, **extra)
        r = runner.invoke(app, ["sweep", spec, "--db", str(tmp_path / "b.db")])
        assert r.exit_code == 2 and says in r.output, (extra, r.output)
        assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    (tmp_path / "bad.yaml").write_text("tasks: [a\n  b: c")
    with pytest.raises(PromptSearchError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")
    for blob in (b"\x89PNG\r\n\x1a\n\x00\x00", "tasks: [caf\xe9]".encode("latin-1")):  # not UTF-8
        (tmp_path / "bin.yaml").write_bytes(blob)
        r = runner.invoke(app, ["sweep", str(tmp_path / "bin.yaml"), "--db", str(tmp_path / "b.db")])
        assert r.exit_code == 2 and "not UTF-8 text" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "b.db").exists()  # nothing was written for a bad spec


def test_dry_run_lists_the_trials_and_their_planned_cost(tmp_path, tiny_model):
    spec = write_spec(tmp_path, tiny_model, searchers=["baseline"])
    r = runner.invoke(app, ["sweep", spec, "--dry-run", "--db", str(tmp_path / "d.db")])
    assert r.exit_code == 0, r.output
    assert "1. sentiment · baseline · zero-shot · seed 0" in r.output and "2 trials" in r.output
    assert "model calls" in r.output and not (tmp_path / "d.db").exists()  # nothing computed or stored


def test_grids_and_tasks_with_changes(tmp_path, tiny_model):
    """Several grids in one spec share the top-level keys and change their own; a task with
    changes is loaded with them (instructions, template, labels, a stratified test sample)."""
    from promptsearch.sweep.spec import resolve_task, task_name

    agnews = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "rlprompt" / "agnews" / "16-42")
    changed = {
        "task": agnews,
        "name": "agnews/16-42",
        "instructions": ["Topic?"],
        "template": "{input}",
        "labels": {"World": "world", "Sports": "sports", "Business": "business", "Tech": "tech"},
        "test_sample": 40,
    }
    plain = load_spec(write_spec(tmp_path, tiny_model))
    spec = load_spec(
        write_spec(
            tmp_path,
            tiny_model,
            tasks=["sentiment", changed],
            grids=[
                {"searchers": ["baseline"]},
                {"searchers": ["baseline"], "harnesses": ["calibrate"], "baseline_shots": 0, "seeds": [0]},
            ],
        )
    )
    assert len(spec.trials) == 2 * 2 + 2 * 1
    assert {t.harness for t in spec.trials} == {"zero-shot", "calibrate"}
    assert {t.config().get("baseline_shots") for t in spec.trials} == {None, 0}
    # a spec without the new keys keeps its trials' keys: left out of the config, and so is a
    # selection that is the whole-dev pick they were made with; any other is there in full
    assert "baseline_shots" not in plain.trials[0].config() and "selection" not in plain.trials[0].config()
    same = load_spec(write_spec(tmp_path, tiny_model, selection={"gate": "off", "select_by": "accuracy"}))
    assert same.trials[0].key() == plain.trials[0].key() and Selection() == Selection.whole_dev()
    gated = load_spec(write_spec(tmp_path, tiny_model, selection={"gate": "off", "select_by": "gold_prob"}))
    wanted = Selection(select_by="gold_prob", gate=None).to_dict()
    assert gated.trials[0].config()["selection"] == wanted and wanted["gate"] is None
    assert run_arguments(gated.trials[0].config())["selection"] == wanted
    assert gated.trials[0].key() != plain.trials[0].key()
    assert plain.trials[0].key() == load_spec(write_spec(tmp_path, tiny_model)).trials[0].key()
    trial = next(t for t in spec.trials if t.task.startswith("{"))
    assert task_name(trial.task) == "agnews/16-42" and trial.label().startswith("agnews/16-42 · baseline")
    task = resolve_task(trial.task)
    assert task.instructions == ["Topic?"] and task.template == "{input}" and task.labels["Tech"] == "tech"
    assert len(task.test) == 40 and sorted(Counter(e.label for e in task.test).values()) == [10, 10, 10, 10]
    assert resolve_task(trial.task).test == task.test  # a fixed sample: seed 0
    assert resolve_task("sentiment") == "sentiment"


def test_the_database_url_never_reaches_a_workers_command_line(tmp_path, tiny_model):
    """Its password would show in `ps` for any local user: the worker gets it on stdin."""
    from servers import free_port

    secret = "s3cret-PW-9f2"
    url = f"postgresql+psycopg://me:{secret}@127.0.0.1:{free_port()}/nothere"
    spec = load_spec(write_spec(tmp_path, tiny_model, seeds=[0], searchers=["baseline"]))
    seen, errors = [], []

    def on_event(trial, kind, info):
        if kind == "start":
            seen.append(Path(f"/proc/{info}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        if kind == "failed":
            errors.append(str(info))

    LocalExecutor(1).run(spec, spec.trials, url, on_event)
    assert seen and all("promptsearch.sweep.worker" in c and secret not in c and "postgresql" not in c for c in seen)
    assert errors and "Cannot use database" in errors[0] and secret not in errors[0]  # it did reach the worker


def _children(pid: int, marker: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        try:
            if (
                d.name.isdigit()
                and f"PPid:\t{pid}\n" in (d / "status").read_text()
                and marker in (d / "cmdline").read_bytes().decode(errors="replace")
            ):
                out.append(int(d.name))
        except OSError:
            pass
    return out


def test_workers_die_with_a_killed_sweep_and_their_trials_are_marked_interrupted(tmp_path, tiny_model):
    import subprocess
    import sys
    import time

    spec = write_spec(tmp_path, tiny_model, seeds=[0], searchers=[{"name": "demos", "options": {"sets": 8}}], budget={})
    db = str(tmp_path / "o.db")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    sweep = subprocess.Popen(
        [sys.executable, "-m", "promptsearch.cli", "sweep", spec, "--db", db],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline, workers = time.time() + 120, []
        while time.time() < deadline and not workers:
            workers = _children(sweep.pid, "promptsearch.sweep.worker")
            time.sleep(0.2)
        assert workers, "no worker started"
        time.sleep(3)  # into its run
        sweep.kill()
        sweep.wait(timeout=30)
        deadline = time.time() + 90
        while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
            time.sleep(0.2)
        alive = [w for w in workers if Path(f"/proc/{w}").exists()]
        for w in alive:
            os.kill(w, signal.SIGKILL)
        assert not alive, "a worker outlived its sweep"
    finally:
        if sweep.poll() is None:
            sweep.kill()
    rows = Store(db).trials([t.key() for t in load_spec(spec).trials])
    assert [r.status for r in rows.values()] == ["interrupted"]


def test_ray_addresses_where_nothing_answers_are_one_line_within_seconds_and_write_nothing(
    tmp_path, tiny_model, monkeypatch
):
    import sys
    import time

    pytest.importorskip("ray")
    from servers import free_port

    spec = write_spec(tmp_path, tiny_model, seeds=[0], searchers=["baseline"])
    db = tmp_path / "ray.db"
    for address in (f"ray://127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"):
        t0 = time.time()
        r = runner.invoke(app, ["sweep", spec, "--ray-address", address, "--db", str(db)])
        assert r.exit_code == 2 and "Cannot reach the Ray cluster" in r.output, r.output
        assert "Traceback" not in r.output and time.time() - t0 < 20
        assert not db.exists()  # no pending trial rows: the cluster is joined first
    monkeypatch.setitem(sys.modules, "grpc", None)  # Ray Client without grpcio: how to get it
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "grpc" else object())
    r = runner.invoke(app, ["sweep", spec, "--ray-address", "ray://127.0.0.1:10001", "--db", str(db)])
    assert r.exit_code == 2 and "pip install 'promptsearch[ray]'" in r.output and not db.exists(), r.output


def test_a_sweep_on_a_local_ray_starts_trials_as_the_cluster_has_room(tmp_path, tiny_model, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    spec = load_spec(
        write_spec(tmp_path, tiny_model, searchers=["baseline"], seeds=[0, 1, 2], resources={"num_cpus": 1})
    )
    order = []
    rows, _ = run_sweep(
        spec,
        Store(str(tmp_path / "w.db")),
        RayExecutor(num_cpus=2),
        str(tmp_path / "w.db"),
        lambda p, t, kind, info: order.append((kind, len(p.running))),
    )
    assert [r.status for r in rows.values()] == ["done"] * 3
    assert max(n for kind, n in order if kind == "start") <= 2  # never more running than 2 CPUs hold
    assert "| baseline |" in markdown(collect(Store(str(tmp_path / "w.db")), rows))
