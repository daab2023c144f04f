"""`promptsearch sweep SPEC.yaml`: a grid of ordinary runs on local processes or Ray, and its table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from promptsearch.cli.common import DbOpt, app, console, open_store


@app.command()
def sweep(
    spec_file: Path = typer.Argument(
        ...,
        metavar="SPEC.yaml",
        help="The grid: tasks, models, searchers (with options), harnesses, seeds, budget per trial (see the README).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the trials and their estimated cost; run nothing."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Local worker processes (trials at a time)."),
    ray: bool = typer.Option(
        False, "--ray", help="Run each trial as a Ray task on a local Ray started for the sweep (or on --ray-address)."
    ),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", metavar="ADDRESS", help="An existing Ray cluster (implies --ray), e.g. ray://head:10001."
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Write the table as markdown here (and a .png plot beside it)."
    ),
    db: Optional[str] = DbOpt,
):
    """Run every trial of a grid as an ordinary run (same records, same cache); a rerun skips
    finished trials. Ends with the sweep's table against the manual prompt."""
    from promptsearch.sweep.spec import load_spec

    spec = load_spec(spec_file)
    db = db or spec.db
    store = open_store(db)
    con = console()
    if dry_run:
        _plan(con, spec, db)
        return
    from promptsearch.sweep.executors import LocalExecutor, RayExecutor
    from promptsearch.sweep.run import run_sweep
    from promptsearch.sweep.table import collect, markdown, plot

    executor = RayExecutor(ray_address) if (ray or ray_address) else LocalExecutor(workers)
    where = (
        f"Ray ({ray_address or 'local'})" if (ray or ray_address) else f"{workers} local worker{'s' * (workers > 1)}"
    )
    con.print(f"Sweep [bold]{spec.name}[/bold]: {len(spec.trials)} trials on {where}; runs and cache in {store.where}")
    live = _Live(con)
    with live:
        rows, progress = run_sweep(spec, store, executor, str(db) if db else None, live.update)
    failed = [r for r in rows.values() if r.status == "failed"]
    done = [r for r in rows.values() if r.status == "done"]
    con.print(
        f"{len(done)} of {len(rows)} trials done"
        + (f", {len(failed)} failed" if failed else "")
        + (f" ({progress.skipped} had finished in an earlier sweep and were skipped)" if progress.skipped else "")
    )
    if not done:
        raise typer.Exit(1 if failed else 0)
    cells = collect(store, rows)
    table = markdown(cells, failed)
    print(table)
    if output:
        output.write_text(f"# Sweep {spec.name}\n\n{table}\n")
        plot(cells, output.with_suffix(".png"))
        con.print(f"Wrote {output} and {output.with_suffix('.png')}")
    if failed:
        raise typer.Exit(1)


def _plan(con, spec, db) -> None:
    """Each trial's planned calls and tokens (a dry run of the runner: nothing computed or stored)."""
    from rich.markup import escape

    from promptsearch.runner import run_search
    from promptsearch.sweep.worker import run_arguments

    total_calls = total_tokens = 0
    for i, t in enumerate(spec.trials, 1):
        plan = run_search(**run_arguments(t.config()), db=str(db) if db else None, dry_run=True)
        total_calls += plan["calls"]
        total_tokens += plan["search"]["tokens"] + plan["test"]["tokens"]
        con.print(
            f"{i:>3}. {escape(t.label())}: {plan['calls']:,} calls to make ({plan['cached']:,} cached), "
            f"~{plan['search']['tokens'] + plan['test']['tokens']:,} tokens"
        )
    con.print(
        f"[bold]{len(spec.trials)} trials[/bold]: {total_calls:,} model calls, ~{total_tokens:,} tokens "
        "(a budget in seconds is not planned: its searches are planned in full)"
    )


def _done(info: dict) -> str:
    """A finished trial: the test score of what the run returned, and the search's own best
    where the run returned a baseline instead."""
    lost = (
        f"; returned {info['returned']}, the search's own best {info['search_test']:.3f}"
        if info.get("returned")
        else ""
    )
    return f"done: test {info['test']:.3f}{lost} (run {info['run_id']})"


class _Live:
    """Counts and each running trial's phase, redrawn in place on a terminal; plain lines
    (trial started, done, failed, retried) otherwise."""

    def __init__(self, con):
        self.con, self.tty = con, sys.stderr.isatty()
        self.live = None

    def __enter__(self):
        if self.tty:
            from rich.live import Live

            self.live = Live("", console=self.con, refresh_per_second=4, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.__exit__(*exc)

    def update(self, progress, trial, kind, info) -> None:
        from rich.markup import escape

        if kind != "phase":
            what = {
                "start": "started",
                "done": _done(info) if kind == "done" else "",
                "failed": f"failed: {info}",
                "retry": f"worker died ({info}); starting it again",
            }[kind]
            self.con.print(f"[{progress.line()}] {escape(trial.label())}: {escape(what)}")
        if self.live is not None:
            lines = [progress.line()] + [f"  {escape(k)}: {escape(v[:80])}" for k, v in progress.running.items()]
            self.live.update("\n".join(lines))
