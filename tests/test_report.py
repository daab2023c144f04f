import csv
import io
import json

import pytest
from typer.testing import CliRunner

from fakes import FakeBackend
from promptsearch import Task, search
from promptsearch.cli import app
from promptsearch.report import leaderboard as lb
from promptsearch.report.run_report import render
from promptsearch.store import Store
from promptsearch.tasks import load_task

EVIL = '[bold]Give[/bold] | opinion <script>alert("x")</script> & "quotes" *stars* and more text'


class WorseBackend(FakeBackend):
    """Another 'model': ignores instructions, so it only ever says "negative"."""

    model_id = "fake:worse"

    def loglikelihood(self, requests, soft_prompt=None):
        out = super().loglikelihood(requests, soft_prompt)
        for r, o in zip(requests, out):
            o.logprob = -0.1 if r.continuation.strip() == "negative" else -2.5
        return out


def evil_task() -> Task:
    s = load_task("sentiment")
    return Task(
        "evil",
        s.train,
        s.dev[:30],
        s.test[:40],
        template=s.template,
        labels=s.labels,
        metric="accuracy",
        instructions=[EVIL],
    )


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "board.db")
    search("sentiment", model=WorseBackend(), db=path)
    search(evil_task(), model=FakeBackend(), db=path)
    search("sentiment", model=FakeBackend(), db=path)
    search("sentiment", model=FakeBackend(), db=path, seed=1)  # newest run of this row wins
    return path


def board(db):
    return lb.build([r.document() for r in Store(db).runs(limit=100)])


def test_rows_cells_and_win_rate(db):
    b = board(db)
    assert b["schema"] == "promptsearch.leaderboard/1" and b["tasks"] == ["evil", "sentiment"]
    rows = {r["model"]: r for r in b["rows"]}
    good, worse = rows["fake:scripted"], rows["fake:worse"]
    assert good["cells"]["sentiment"]["runs"] == 2 and good["cells"]["sentiment"]["test"]["mean"] == 1.0
    assert good["mean_win_rate"] == 1.0 and worse["mean_win_rate"] == 0.0
    assert b["rows"][0]["model"] == "fake:scripted"  # ordered by win rate
    evil = good["cells"]["evil"]
    assert evil["best_prompt"] == EVIL and evil["best_prompt_short"].endswith("…")
    assert evil["baseline"]["name"] == "manual-1"  # the task's reference baseline
    newest = json.loads(Store(db).runs(limit=1)[0].result)
    assert good["cells"]["sentiment"]["run_id"] == newest["run_id"]


def test_every_format_escapes_prompt_text(db):
    b = board(db)
    html = lb.to_html(b)
    assert "<script>" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert '<table id="leaderboard">' in html
    md = lb.to_markdown(b)
    assert "<script>" not in md and "\\|" in md
    head, sep, *rows = md.strip().splitlines()
    import re

    cols = lambda line: len(re.findall(r"(?<!\\)\|", line))  # noqa: E731  unescaped pipes
    assert all(cols(r) == cols(head) for r in rows)  # prompt pipes did not add columns
    rows = list(csv.DictReader(io.StringIO(lb.to_csv(b))))
    assert EVIL in {r["best_prompt"] for r in rows}  # CSV keeps the text exactly, safely quoted
    assert {r["task"] for r in rows} == {"evil", "sentiment"}
    assert json.loads(lb.to_json(b))["rows"][0]["cells"]["evil"]["best_prompt"] == EVIL
    from rich.console import Console

    con = Console(record=True, width=200)
    con.print(lb.to_table(b))
    assert "[bold]Give[/bold]" in con.export_text()  # shown literally, not as rich markup


def test_run_report_html(db):
    store = Store(db)
    run = next(r for r in store.runs(limit=10) if r.task == "evil")
    page = render(run.document(), store.run_tests(run.id))
    assert page.count("data:image/png;base64,") == 1  # best == baseline here: no difference plot
    assert "<script>" not in page and "&lt;script&gt;" in page
    for anchor in ("budget-plot", "candidates", "baselines", "record", "best-prompt"):
        assert f'id="{anchor}"' in page or f"id='{anchor}'" in page
    run = next(r for r in store.runs(limit=10) if r.model == "fake:worse")
    page = render(run.document(), store.run_tests(run.id))
    assert page.count("data:image/png;base64,") == 2 and "id='differences'" in page


def test_cli_leaderboard_and_report(db, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["leaderboard", "--db", db])
    assert r.exit_code == 0 and "mean win rate" in r.output
    for fmt in ("md", "html", "json", "csv"):
        out = tmp_path / f"board.{fmt}"
        r = runner.invoke(app, ["leaderboard", "--db", db, "--format", fmt, "--output", str(out)])
        assert r.exit_code == 0 and out.stat().st_size > 100
    out = tmp_path / "board.txt"  # the terminal table as text, not Markdown
    r = runner.invoke(app, ["leaderboard", "--db", db, "--format", "table", "--output", str(out)])
    assert r.exit_code == 0 and "mean win rate" in out.read_text() and "|---|" not in out.read_text()
    r = runner.invoke(app, ["leaderboard", "--db", db, "--format", "json", "--task", "evil"])
    assert json.loads(r.stdout)["tasks"] == ["evil"]
    r = runner.invoke(app, ["leaderboard", "--db", db, "--format", "xml"])
    assert r.exit_code == 2 and "Unknown format 'xml'" in r.stderr
    r = runner.invoke(app, ["leaderboard", "--db", str(tmp_path / "empty.db")])
    assert r.exit_code == 2 and "No runs" in r.stderr
    run_id = Store(db).runs(limit=1)[0].id
    out = tmp_path / "run.html"
    r = runner.invoke(app, ["report", run_id, "--db", db, "--output", str(out)])
    assert r.exit_code == 0 and "budget-plot" in out.read_text()
    r = runner.invoke(app, ["report", run_id, "--db", db, "--output", str(tmp_path / "no" / "dir.html")])
    assert r.exit_code == 2 and "Cannot write" in r.stderr


def test_report_renders_in_headless_chromium(db, tmp_path):
    """Debian's chromium, if installed (nothing is downloaded): the page loads, the tables
    are in the DOM, the plot image is painted, and no script tag came from prompt text."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "report_render", Path(__file__).parents[1] / "benchmarks" / "report_render.py"
    )
    rr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rr)
    if rr.chromium() is None:
        pytest.skip("Debian's chromium is not installed")
    store = Store(db)
    run = next(r for r in store.runs(limit=10) if r.model == "fake:worse")
    html = tmp_path / "r.html"
    html.write_text(render(json.loads(run.result), store.run_tests(run.id)), encoding="utf-8")
    got = rr.browse(html, tmp_path / "r.png")
    assert got["tables"] >= 3 and got["table_rows"] >= 5 and got["png_images"] == 2
    assert got["red_pixels"] > 200 and got["blue_pixels"] > 50  # the running-best line and the points
    evil = tmp_path / "board.html"
    evil.write_text(lb.to_html(board(db)), encoding="utf-8")
    got = rr.browse(evil, tmp_path / "b.png", height=600)
    assert got["raw_script_tags"] == 0 and got["table_rows"] >= 3
