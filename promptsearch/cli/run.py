"""`promptsearch run`: search on dev, score the best and the baselines on test, print the result."""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer

from promptsearch.cli.common import (
    Bar,
    BaseUrlOpt,
    ConcurrencyOpt,
    DbOpt,
    HarnessOpt,
    JsonOpt,
    ModelOpt,
    ScorerOpt,
    TaskOpt,
    app,
    configure_flags,
    console,
    cost_line,
    dollars,
    fmt_score,
    parse_options,
)
from promptsearch.document import RunDocument, Score, ranked
from promptsearch.evaluation.stats import PairedDiff
from promptsearch.records import dumps
from promptsearch.registry import DEFAULT_SEARCHER


@app.command()
def run(
    task: str = TaskOpt,
    searcher: str = typer.Option(
        DEFAULT_SEARCHER,
        "--searcher",
        "-s",
        help="Searcher name; see `promptsearch searchers` "
        f"(default {DEFAULT_SEARCHER}: the best of a measured comparison, see the README).",
    ),
    model: Optional[str] = ModelOpt,
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Searcher option key=value (repeatable); see `promptsearch searchers`."
    ),
    proposer: Optional[str] = typer.Option(
        None,
        "--proposer",
        help="Model that writes instructions for searchers that propose them (ape); default: the target.",
    ),
    seed: int = typer.Option(0, help="Seed for everything random in the run."),
    max_evals: Optional[int] = typer.Option(
        None, min=0, help="Budget: example scorings during the search (dev, and train for searchers that score train)."
    ),
    max_calls: Optional[int] = typer.Option(None, min=0, help="Budget: model calls (cache hits are free)."),
    max_seconds: Optional[float] = typer.Option(None, min=0, help="Budget: seconds of search."),
    max_tokens: Optional[int] = typer.Option(
        None, min=0, help="Budget: tokens the model(s) process, proposer included."
    ),
    max_dollars: Optional[float] = typer.Option(
        None, min=0, help="Budget: dollars at the price table's prices, proposer included."
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Print the planned calls, tokens and estimated cost, and exit: nothing is computed, sent or stored.",
    ),
    base_url: Optional[str] = BaseUrlOpt,
    concurrency: Optional[int] = ConcurrencyOpt,
    shots: Optional[int] = typer.Option(
        None,
        min=0,
        help="Demos in the k-shot baseline reported on test (default: the searcher's own `shots` option, else 4).",
    ),
    harness: str = HarnessOpt,
    scorer: Optional[str] = ScorerOpt,
    db: Optional[str] = DbOpt,
    as_json: bool = JsonOpt,
    select_by: str = typer.Option(
        "accuracy",
        "--select-by",
        help="What picks the run's answer: accuracy (the task's metric), gold_prob (the gold label's probability, "
        "for label tasks), or auto (gold_prob where labels are scored, else accuracy). Reports keep the metric.",
    ),
    gate: str = typer.Option(
        "off",
        "--gate",
        metavar="LEVEL",
        help="Hold out half of dev to confirm the search's best; it replaces the best baseline only when the "
        "paired interval at LEVEL (e.g. 0.9) of its lead there is above zero (default off: the whole dev split).",
    ),
    select_on: str = typer.Option(
        "dev",
        "--select-on",
        help="dev, or train+dev: the search also selects on train examples held out of its train (no demo, "
        "proposer or training step sees them); searchers that train on train (soft, autoprompt, rl) stay on dev.",
    ),
    race_level: str = typer.Option(
        "off",
        "--race-level",
        metavar="LEVEL",
        help="Racing (ape, demos) drops a candidate below the cut only when a paired interval at LEVEL (e.g. 0.8) "
        "says it is behind the leader (default off: by rank alone).",
    ),
    resume: Optional[str] = typer.Option(
        None,
        "--resume",
        metavar="RUN",
        help="Continue an interrupted run of a searcher that checkpoints (rl), with the arguments it started with.",
    ),
):
    """Search for the best prompt on dev, then score it and the baselines on test."""
    from promptsearch.budget import Budget
    from promptsearch.runner import run_search
    from promptsearch.selection import Selection

    configure_flags(base_url, concurrency)
    opts = parse_options(option)
    if proposer:
        opts["proposer"] = proposer
    con = console()
    with Bar(enabled=sys.stderr.isatty() and not dry_run) as bar:
        phase = bar.phase if not (as_json or dry_run) else (lambda m: None)
        doc = run_search(
            task,
            model=model,
            searcher=searcher,
            options=opts,
            budget=Budget(max_evals, max_calls, max_seconds, max_tokens, max_dollars),
            seed=seed,
            scorer=scorer,
            db=str(db) if db else None,
            baseline_shots=shots,
            harness=harness,
            progress=bar,
            phase=phase,
            dry_run=dry_run,
            resume=resume,
            selection=None if resume else Selection(select_by, gate, race_level=race_level, select_on=select_on),
        )
    if as_json:
        print(dumps(doc, indent=2))
        return
    if dry_run:
        _print_plan(con, doc)
        return
    print_run(con, RunDocument.from_dict(doc))


def _print_plan(con, doc: dict[str, Any]) -> None:
    from rich.markup import escape

    t = doc["task"]
    con.print(
        f"[bold]Dry run[/bold]: {t['name']} ({t['sizes']['dev']} dev / {t['sizes']['test']} test) · model "
        f"{escape(doc['model']['model'])} · searcher {doc['searcher']['name']} · harness {escape(doc['harness'])}"
    )
    for part in ("search", "test"):
        c = doc[part]
        con.print(
            f"  {part:<6} {c['calls']:>6,} calls to make, {c['cache_hits']:>6,} answered by the cache, "
            f"~{c['tokens']:,} tokens, {dollars(c)}"
        )
    total = (
        "unknown (no price for this model: see PROMPTSEARCH_PRICES)"
        if doc["dollars"] is None
        else f"${doc['dollars']:.4f}"
    )
    con.print(
        f"[bold]Planned[/bold]: {doc['calls']:,} model calls to make ({doc['cached']:,} answered by the cache), "
        f"~{doc['tokens']:,} tokens, estimated cost {total}"
    )
    if doc["stopped_by"]:
        con.print(f"[yellow]The budget would stop the search: {escape(doc['stopped_by'])}[/yellow]")
    con.print(f"[dim]{doc['note']}[/dim]")


def dev_cell(dev: Score | None) -> str:
    """A dev score with the number of examples it is on: "0.812 (32)"; "–" when not scored
    (runs stored before baselines were scored on dev)."""
    if not dev:
        return "–"
    return f"{dev.mean:.3f} ({dev.n})" if dev.n else f"{dev.mean:.3f}"


def _paired_cell(d: PairedDiff | None) -> str:
    return "" if d is None else f"{d.diff:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]"


def print_run(con, doc: RunDocument) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = doc.task
    con.print(
        f"[bold]{t.name}[/bold] ({t.sizes['train']}/{t.sizes['dev']}/{t.sizes['test']} "
        f"train/dev/test, {t.metric}) · model {doc.model_name} · searcher {doc.searcher.name}"
        f" · harness {escape(doc.harness)}"
    )
    cands = ranked(doc.candidates)
    table = Table(
        title=f"Dev candidates (top {min(10, len(cands))} of {len(cands)}, ranked by dev examples scored, then score)",
        title_justify="left",
    )
    table.add_column("#", justify="right")
    table.add_column("candidate")
    table.add_column("prompt", overflow="fold", max_width=70)
    table.add_column("dev", justify="right")
    table.add_column("n", justify="right")
    score = next((c.selection["score"] for c in cands if c.selection), None)
    if score:
        table.add_column(f"{'gold prob' if score == 'gold_prob' else 'dev'} [95% CI]", justify="right")
    for i, c in enumerate(cands[:10], 1):
        name = c.name + (" (after the search)" if c.outside_search else "")
        row = [str(i), escape(name), escape(c.prompt), f"{c.dev_mean:.3f}", str(c.dev_n or "")]
        table.add_row(*row, *([c.selection_cell] if score else []))
    con.print(table)
    best, sb = doc.best, doc.search_best
    con.print(f"[bold green]Best prompt[/bold green] ({escape(best.name)}): {escape(best.prompt)}")
    if best.returned_baseline and sb.name != best.name:  # what export --search-best gives
        con.print(f"[bold]Search's own best[/bold] ({escape(sb.name)}): {escape(sb.prompt)}")
    conf = doc.confirmation
    if conf is not None:
        color = "green" if conf.passed else "yellow"
        con.print(f"[{color}]{escape(conf.line(sb.name))}[/{color}]")
    elif best.returned_baseline:
        con.print(
            f"[yellow]The search did not beat the baseline on dev: its best ({escape(sb.name)}, dev "
            f"{sb.dev.mean:.3f}) is below {escape(best.name)} ({best.dev.mean:.3f}), so the run "
            "returns the baseline.[/yellow]"
        )
    tt = Table(title=f"Held-out test ({t.sizes['test']} examples): best vs baselines", title_justify="left")
    for col, just in (("prompt", "left"), ("dev", "right"), ("test", "right"), ("best − it [95% CI]", "right")):
        tt.add_column(col, justify=just)  # type: ignore[arg-type]
    tt.add_row(f"[bold]best: {escape(best.name)}[/bold]", dev_cell(best.dev), fmt_score(best.test), "")
    if best.returned_baseline:
        sb_diff = _paired_cell(sb.picked_minus_it)
        tt.add_row(f"search's best: {escape(sb.name)}", dev_cell(sb.dev), fmt_score(sb.test), sb_diff)
    for b in doc.baselines:
        same = b.candidate == best.candidate or b.name == best.name
        diff = "(the best)" if same else _paired_cell(b.best_minus_baseline)
        tt.add_row(escape(b.name), dev_cell(b.dev), fmt_score(b.test), diff)
    con.print(tt)
    ro = doc.record.searcher_notes.get("readout")
    if ro:
        dev = f", dev {ro['dev']:.3f} as a discrete prompt" if "dev" in ro else ""
        con.print(
            f"Readout: {escape(repr(ro['text']))} (ids {' '.join(map(str, ro['ids']))}{dev}) [dim]- the nearest "
            "vocabulary token to each learned vector; the vectors are not text[/dim]"
        )
    cost = doc.cost
    con.print(f"Cost: {cost_line(cost.total.to_dict())}; {cost.wall_seconds:.1f} s wall")
    if doc.from_cache:
        con.print(
            f"[cyan]Everything came from the cache: 0 model calls ({cost.total.cache_hits} cached answers).[/cyan]"
        )
    if doc.stopped_by:
        con.print(f"[yellow]Search stopped early: {escape(doc.stopped_by)}[/yellow]")
        hits = cost.search.cache_hits
        free = ("call budget", "time budget", "token budget", "dollar budget")  # budgets cache hits do not spend
        if hits and not doc.from_cache and doc.stopped_by.startswith(free):
            con.print(
                f"[dim]{hits} of its answers came from the cache, which budgets count as free, so it got "
                "further than the same budget would on an empty cache; --max-evals reruns exactly.[/dim]"
            )
    con.print(f"Stored as run [bold]{doc.run_id}[/bold] in {doc.db}  (promptsearch show {doc.run_id})")
