"""Tables say what a run returned: a baseline that beat the search's own best on dev is
named wherever the run appears (leaderboard, sweep table, `runs`), with the search's own
best beside it; `runs` shows the harness and cuts prompts at a word with an ellipsis."""

from __future__ import annotations

import json

import pytest
from clitools import invoke, strict_json
from typer.testing import CliRunner

from fakes import FakeBackend
from promptsearch.cli import app
from promptsearch.document import RunDocument
from promptsearch.report.leaderboard import build, to_csv, to_markdown, to_text
from promptsearch.runner import run_search
from promptsearch.store import Store
from promptsearch.store.models import SweepTrial
from promptsearch.sweep.table import collect, markdown

runner = CliRunner()


def lost_to_manual(tmp_path, harness=None) -> tuple[dict, str]:
    """An APE run whose instructions never say "opinion": the fake answers them as it answers
    the empty prompt, and the manual instruction (which does) wins on dev."""
    db = str(tmp_path / "t.db")
    doc = run_search(
        "sentiment",
        model=FakeBackend(gen_rule=lambda text, r: f"Judge review tone {r.sample_index}."),
        searcher="ape",
        options={"rounds": "0"},
        db=db,
        harness=harness,
    )
    return doc, db


def test_a_returned_baseline_is_marked_in_every_table(tmp_path):
    doc, db = lost_to_manual(tmp_path)
    assert doc["best"]["picked"] == "baseline" and doc["best"]["name"] == "manual-1"
    board = build([RunDocument.from_dict(doc)])
    cell = board["rows"][0]["cells"]["sentiment"]
    assert cell["returned_baseline"] == "manual-1"
    assert "returned baseline manual-1" in to_markdown(board) and "returned baseline manual-1" in to_text(board)
    assert to_csv(board).splitlines()[1].endswith(",manual-1")
    config = {"task": "sentiment", "harness": "zero-shot", "searcher": "ape"}
    row = SweepTrial(key="k", sweep="s", config=json.dumps(config), status="done", run_id=doc["run_id"])
    table = markdown(collect(Store(db), {"k": row}))
    own = doc["search_best"]["test"]["mean"]
    assert (
        f"{doc['best']['test']['mean']:.3f} " in table
        and f"returned manual-1 in 1/1 (search's own best {own:.3f})" in table
    )


@pytest.mark.parametrize("width", [100, 140])
def test_runs_shows_the_harness_and_cuts_prompts_at_a_word(tmp_path, width):
    doc, db = lost_to_manual(tmp_path, harness="fewshot:k=2")
    r = runner.invoke(app, ["runs", "--db", db], env={"COLUMNS": str(width)})
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if doc["run_id"][-4:] in x)
    assert "fewshot:k=2" in line and "[baseline]" in line and "harness" in r.output
    prompt = line.split("[baseline]")[1].strip()
    full = doc["best"]["prompt"]
    assert prompt.endswith("…") and full.startswith(prompt[:-1].rstrip()) and full[len(prompt[:-1].rstrip())] == " "


def test_runs_listing_fits_80_columns(fake_backend_registered):
    run = strict_json(invoke("run", "--model", "fake:x", "--json").stdout)
    out = invoke("runs", env={"COLUMNS": "80"}).output
    assert all(len(line) <= 80 for line in out.splitlines()), out
    header = next(line for line in out.splitlines() if "searcher" in line)
    assert "searcher" in header.split() and "test" in header.split()
    short = run["run_id"][-4:]
    assert short in out and invoke("show", short).exit_code == 0
