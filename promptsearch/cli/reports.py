"""`promptsearch leaderboard` and `promptsearch report`: runs compared, and one run as a page."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from promptsearch.cli.common import DbOpt, app, console, open_store, write_file


@app.command()
def leaderboard(
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Only this task."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, html, json or csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of the terminal."),
    db: Optional[str] = DbOpt,
):
    """Compare stored runs: rows are (searcher, model, harness), columns are tasks."""
    from promptsearch.errors import PromptSearchError
    from promptsearch.report import leaderboard as lb

    formats = {"md": lb.to_markdown, "html": lb.to_html, "json": lb.to_json, "csv": lb.to_csv, "table": lb.to_text}
    if fmt not in formats:
        raise PromptSearchError(f"Unknown format '{fmt}'. Use one of: {', '.join(formats)}.")
    store = open_store(db)
    docs = [r.document() for r in store.runs(task, limit=100_000)]
    if not docs:
        raise PromptSearchError(
            f"No runs{f' of task {task!r}' if task else ''} in {store.where}; start one with `promptsearch run`."
        )
    board = lb.build(docs, task)
    if fmt == "table" and output is None:
        console().print(lb.to_table(board))
        return
    text = formats[fmt](board)
    if output is None:
        sys.stdout.write(text)
        return
    write_file(output, text)
    console().print(f"Wrote {output}")


@app.command()
def report(
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id (or a unique prefix)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="HTML file to write (default: run-RUN.html)."),
    db: Optional[str] = DbOpt,
):
    """Write one standalone HTML page for a run: plots, top candidates, per-example differences, record."""
    from promptsearch.report.run_report import render

    store = open_store(db)
    run = store.get_run(run_id)
    html = render(run.document(), store.run_tests(run.id))
    output = output or Path(f"run-{run.id}.html")
    write_file(output, html)
    console().print(f"Wrote {output}")
