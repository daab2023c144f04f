"""The `promptsearch` command. Nothing heavy is imported at module level: `--help` stays fast."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup

from promptsearch.records import dumps, redact  # light: json and re only

INTERRUPTED = "Interrupted. Answers received so far are in the cache; run the same command again to resume."


class _Group(TyperGroup):
    """Turns user errors into one line on stderr and exit code 2 (no traceback), and
    Ctrl-C into a short note and exit code 130."""

    def invoke(self, ctx):
        from promptsearch.errors import PromptSearchError

        _log_to_stderr()
        try:
            return super().invoke(ctx)
        except _usage_errors() as e:  # a bad flag or value: one line, like every other input error
            where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
            typer.echo(f"Error: {e.format_message()}{where}", err=True)
            raise typer.Exit(2) from None
        except PromptSearchError as e:
            typer.echo(f"Error: {redact(str(e))}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.echo(INTERRUPTED, err=True)
            raise typer.Exit(130) from None


def _usage_errors() -> tuple[type, ...]:
    """click's UsageError, from the copy of click typer uses (typer 0.2x ships its own)."""
    found = []
    for mod in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(__import__(mod, fromlist=["UsageError"]).UsageError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


class _StderrLines(logging.Handler):
    """Plain "Warning: ..." lines on whatever stderr is now (tests swap it per command)."""

    def emit(self, record) -> None:
        sys.stderr.write(f"Warning: {redact(record.getMessage())}\n")


def _log_to_stderr() -> None:
    """Warnings from promptsearch (a server retrying, say) as plain lines on stderr."""
    logger = logging.getLogger("promptsearch")
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        logger.addHandler(_StderrLines())
        logger.setLevel(logging.WARNING)
        logger.propagate = False


app = typer.Typer(
    cls=_Group,
    help="Automatic prompt search: find the prompt that makes a model do your task best, "
    "and prove it on held-out data against baselines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cache_app = typer.Typer(cls=_Group, help="Inspect or clear the model-request cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

TaskOpt = typer.Option("sentiment", "--task", "-t", help="Built-in task name, a .jsonl/.csv/.json/.tsv file or folder, or hf:NAME.")
ModelOpt = typer.Option(None, "--model", "-m", help="embedded (default), hf:<hub id or local folder>, or openai:<model>[,api=completions] "
                        "for OpenAI or any OpenAI-compatible server. Env: PROMPTSEARCH_MODEL.")
BaseUrlOpt = typer.Option(None, "--base-url", help="OpenAI-compatible server for openai:<model> models, e.g. http://127.0.0.1:8000/v1 "
                          "(vLLM, llama.cpp, transformers serve). Env: OPENAI_BASE_URL.")
ConcurrencyOpt = typer.Option(None, "--concurrency", min=1, help="Requests in flight to a server at once. Env: PROMPTSEARCH_CONCURRENCY (default 8).")
DbOpt = typer.Option(None, "--db", help="SQLite database file. Env: PROMPTSEARCH_DB (default ~/.promptsearch/promptsearch.db).")
ScorerOpt = typer.Option(None, "--scorer", help="Scorer name (default: the task's metric): accuracy, exact_match, contains, f1, exact_set, or a plug-in.")
JsonOpt = typer.Option(False, "--json", help="Print the result as one JSON document (schema in the README).")
HarnessOpt = typer.Option("zero-shot", "--harness", help="How prompts are run: zero-shot, fewshot:k=4, cot, sc:n=5,temperature=0.7, "
                          "or a combination such as fewshot:k=4+cot+sc:n=5.")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


class _Bar:
    """Adapts the evaluator's (label, done, total) callback to one rich progress bar."""

    def __init__(self, enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description:<42}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=_console(stderr=True), transient=True,
                                 disable=not enabled)
        self.task_id = None
        self.label = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, label: str, done: int, total: int) -> None:
        if label != self.label or self.task_id is None:
            if self.task_id is not None:
                self.progress.remove_task(self.task_id)
            from promptsearch.text import shorten

            self.task_id = self.progress.add_task(shorten(label, 42), total=total)
            self.label = label
        self.progress.update(self.task_id, completed=done, total=total)

    def phase(self, message: str) -> None:
        self.progress.console.print(f"[bold]›[/bold] {message}")


def _parse_options(options: list[str]) -> dict[str, str]:
    from promptsearch.errors import PromptSearchError

    out = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PromptSearchError(f"Option '{item}' must look like key=value (e.g. -o shots=8).")
        out[key.strip()] = value.strip()
    return out


def _fmt(score: Optional[dict]) -> str:
    from promptsearch.report.leaderboard import format_score

    return format_score(score, with_n=False)


def _dollars(cost: dict) -> str:
    if cost.get("unpriced_calls"):
        known = f"${cost['dollars']:.4f} + " if cost.get("dollars") else ""
        return f"{known}{cost['unpriced_calls']} calls at an unknown price"
    return f"${cost.get('dollars', 0.0):.4f}"


def _cost_line(cost: dict) -> str:
    return (f"{cost['calls']} model calls, {cost['tokens']:,} tokens, {cost['cache_hits']} cache hits, "
            f"{cost['seconds']:.1f} s in the model, {_dollars(cost)}")


def _configure(base_url: Optional[str], concurrency: Optional[int]) -> None:
    from promptsearch.settings import configure

    configure()  # this command's flags only
    configure(openai_base_url=base_url, concurrency=concurrency)


@app.command()
def run(
    task: str = TaskOpt,
    searcher: str = typer.Option("baseline", "--searcher", "-s", help="Searcher name; see `promptsearch searchers`."),
    model: Optional[str] = ModelOpt,
    option: list[str] = typer.Option([], "--option", "-o", help="Searcher option key=value (repeatable); see `promptsearch searchers`."),
    proposer: Optional[str] = typer.Option(None, "--proposer", help="Model that writes instructions for searchers that propose them (ape); default: the target."),
    seed: int = typer.Option(0, help="Seed for everything random in the run."),
    max_evals: Optional[int] = typer.Option(None, min=0, help="Budget: example scorings during the search (dev, and train for searchers that score train)."),
    max_calls: Optional[int] = typer.Option(None, min=0, help="Budget: model calls (cache hits are free)."),
    max_seconds: Optional[float] = typer.Option(None, min=0, help="Budget: seconds of search."),
    max_tokens: Optional[int] = typer.Option(None, min=0, help="Budget: tokens the model(s) process, proposer included."),
    max_dollars: Optional[float] = typer.Option(None, min=0, help="Budget: dollars at the price table's prices, proposer included."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the planned calls, tokens and estimated cost, and exit: "
                                 "nothing is computed, sent or stored."),
    base_url: Optional[str] = BaseUrlOpt,
    concurrency: Optional[int] = ConcurrencyOpt,
    shots: Optional[int] = typer.Option(None, min=0, help="Demos in the k-shot baseline reported on test "
                                        "(default: the searcher's own `shots` option, else 4)."),
    harness: str = HarnessOpt,
    scorer: Optional[str] = ScorerOpt,
    db: Optional[Path] = DbOpt,
    as_json: bool = JsonOpt,
    resume: Optional[str] = typer.Option(None, "--resume", metavar="RUN", help="Continue an interrupted run of a "
                                         "searcher that checkpoints (rl), with the arguments it started with."),
):
    """Search for the best prompt on dev, then score it and the baselines on test."""
    from promptsearch.budget import Budget
    from promptsearch.runner import run_search

    _configure(base_url, concurrency)
    opts = _parse_options(option)
    if proposer:
        opts["proposer"] = proposer
    con = _console()
    with _Bar(enabled=sys.stderr.isatty() and not dry_run) as bar:
        phase = bar.phase if not (as_json or dry_run) else (lambda m: None)
        doc = run_search(task, model=model, searcher=searcher, options=opts,
                         budget=Budget(max_evals, max_calls, max_seconds, max_tokens, max_dollars), seed=seed,
                         scorer=scorer, db=str(db) if db else None, baseline_shots=shots, harness=harness,
                         progress=bar, phase=phase, dry_run=dry_run, resume=resume)
    if as_json:
        print(dumps(doc, indent=2))
        return
    if dry_run:
        _print_plan(con, doc)
        return
    _print_run(con, doc)


def _print_plan(con, doc: dict[str, Any]) -> None:
    from rich.markup import escape

    t = doc["task"]
    con.print(f"[bold]Dry run[/bold]: {t['name']} ({t['sizes']['dev']} dev / {t['sizes']['test']} test) · model "
              f"{escape(doc['model']['model'])} · searcher {doc['searcher']['name']} · harness {escape(doc['harness'])}")
    for part in ("search", "test"):
        c = doc[part]
        con.print(f"  {part:<6} {c['calls']:>6,} calls to make, {c['cache_hits']:>6,} answered by the cache, "
                  f"~{c['tokens']:,} tokens, {_dollars(c)}")
    total = "unknown (no price for this model: see PROMPTSEARCH_PRICES)" if doc["dollars"] is None else f"${doc['dollars']:.4f}"
    con.print(f"[bold]Planned[/bold]: {doc['calls']:,} model calls to make ({doc['cached']:,} answered by the cache), "
              f"~{doc['tokens']:,} tokens, estimated cost {total}")
    if doc["stopped_by"]:
        con.print(f"[yellow]The budget would stop the search: {escape(doc['stopped_by'])}[/yellow]")
    con.print(f"[dim]{doc['note']}[/dim]")


def _print_run(con, doc: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = doc["task"]
    con.print(f"[bold]{t['name']}[/bold] ({t['sizes']['train']}/{t['sizes']['dev']}/{t['sizes']['test']} "
              f"train/dev/test, {t['metric']}) · model {doc['model']['model']} · searcher {doc['searcher']['name']}"
              f" · harness {escape(doc['harness'])}")
    cands = sorted(doc["candidates"], key=lambda c: -c["dev_mean"])
    table = Table(title=f"Dev candidates (top {min(10, len(cands))} of {len(cands)})", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("candidate")
    table.add_column("prompt", overflow="fold", max_width=70)
    table.add_column("dev", justify="right")
    for i, c in enumerate(cands[:10], 1):
        table.add_row(str(i), escape(c["name"]), escape(c["prompt"]), f"{c['dev_mean']:.3f}")
    con.print(table)
    best = doc["best"]
    con.print(f"[bold green]Best prompt[/bold green] ({escape(best['name'])}): {escape(best['prompt'])}")
    tt = Table(title=f"Held-out test ({t['sizes']['test']} examples): best vs baselines", title_justify="left")
    for col, just in (("prompt", "left"), ("dev", "right"), ("test", "right"), ("best − it [95% CI]", "right")):
        tt.add_column(col, justify=just)  # type: ignore[arg-type]
    tt.add_row(f"[bold]best: {escape(best['name'])}[/bold]", f"{best['dev']['mean']:.3f}", _fmt(best["test"]), "")
    for b in doc["baselines"]:
        d = b["best_minus_baseline"]
        same = b["candidate"] == best["candidate"] or b["name"] == best["name"]
        diff = "(the best)" if same else f"{d['diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
        tt.add_row(escape(b["name"]), f"{b['dev']['mean']:.3f}" if b["dev"] else "–", _fmt(b["test"]), diff)
    con.print(tt)
    ro = doc.get("record", {}).get("searcher_notes", {}).get("readout")
    if ro:
        dev = f", dev {ro['dev']:.3f} as a discrete prompt" if "dev" in ro else ""
        con.print(f"Readout: {escape(repr(ro['text']))} (ids {' '.join(map(str, ro['ids']))}{dev}) [dim]- the nearest "
                  "vocabulary token to each learned vector; the vectors are not text[/dim]")
    cost = doc["cost"]
    con.print(f"Cost: {_cost_line(cost['total'])}; {cost['wall_seconds']:.1f} s wall")
    if doc["from_cache"]:
        con.print(f"[cyan]Everything came from the cache: 0 model calls ({cost['total']['cache_hits']} cached answers).[/cyan]")
    if doc["stopped_by"]:
        con.print(f"[yellow]Search stopped early: {escape(doc['stopped_by'])}[/yellow]")
    con.print(f"Stored as run [bold]{doc['run_id']}[/bold] in {doc['db']}  (promptsearch show {doc['run_id']})")


@app.command("eval")
def eval_(
    task: str = TaskOpt,
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="Instruction text to score."),
    prompt_file: Optional[Path] = typer.Option(None, "--prompt-file", "-f", help="Read the instruction from a file."),
    shots: int = typer.Option(0, min=0, help="Prepend this many class-balanced train demos."),
    split: str = typer.Option("test", help="train, dev or test."),
    limit: Optional[int] = typer.Option(None, min=1, help="Score only the first N examples."),
    seed: int = typer.Option(0, help="Seed for demo selection."),
    model: Optional[str] = ModelOpt,
    base_url: Optional[str] = BaseUrlOpt,
    concurrency: Optional[int] = ConcurrencyOpt,
    harness: str = HarnessOpt,
    scorer: Optional[str] = ScorerOpt,
    db: Optional[Path] = DbOpt,
    as_json: bool = JsonOpt,
):
    """Score a given prompt on one split of a task."""
    from promptsearch.candidates import Candidate
    from promptsearch.errors import PromptSearchError
    from promptsearch.runner import run_eval
    from promptsearch.searchers.baseline import pick_demos
    from promptsearch.tasks.loaders import load_task

    _configure(base_url, concurrency)
    if prompt is not None and prompt_file is not None:
        raise PromptSearchError("Give either --prompt or --prompt-file, not both.")
    if prompt_file is not None:
        try:
            prompt = prompt_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise PromptSearchError(f"Cannot read prompt file '{prompt_file}': {e}.") from None
    t = load_task(task)
    cand = Candidate(instruction=prompt or "", demos=pick_demos(t, shots, seed), name="prompt")
    with _Bar(enabled=sys.stderr.isatty()) as bar:
        _, doc = run_eval(t, cand, model=model, split=split, scorer=scorer, db=str(db) if db else None,
                          limit=limit, harness=harness, progress=bar)
    if not prompt and not shots:  # said once the scoring worked, so an error stays one line
        _console(stderr=True).print("No --prompt given: scored the empty prompt (the template alone).")
    if as_json:
        print(dumps(doc, indent=2))
        return
    from rich.markup import escape

    con = _console()
    con.print(f"[bold]{doc['task']['name']}[/bold] {split} · model {doc['model']['model']} · prompt: {escape(doc['prompt'])}")
    con.print(f"{doc['task']['metric']}: [bold]{_fmt(doc['score'])}[/bold] on {doc['score']['n']} examples"
              f" · harness {escape(doc['harness'])}")
    extras = dict(doc["extras"])
    if extras.get("calibration"):
        con.print("  " + calibration_line(extras.pop("calibration")))
    if extras:
        con.print("  " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in extras.items()))
    con.print(f"Cost: {_cost_line(doc['cost'])}" + ("  [cyan](all from the cache)[/cyan]" if doc["from_cache"] else ""))


def calibration_line(cal: dict) -> str:
    """'calibration: domain, 20 inputs (train+dev), bias negative 0.31, positive 0.69'"""
    from rich.markup import escape

    where = "the scored inputs" if cal["transductive"] else "train+dev"
    bias = ", ".join(f"{escape(lab)} {p:.2f}" for lab, p in cal["bias"].items())
    return f"calibration: {cal['mode']}, {cal['inputs']} inputs ({where}), bias {bias}"


@app.command()
def tasks():
    """List built-in and plug-in tasks, and the file formats `--task` accepts."""
    from rich.table import Table

    from promptsearch import registry
    from promptsearch.errors import PromptSearchError

    table = Table(title="Tasks", title_justify="left")
    table.add_column("name")
    table.add_column("splits and labels")
    for name in registry.tasks.names():
        try:
            summary = registry.tasks.get(name)().summary()
        except PromptSearchError as e:
            summary = f"(unavailable: {e})"
        table.add_row(name, summary)
    con = _console()
    con.print(table)
    con.print("Also: --task FILE.jsonl | FILE.csv | FILE.json (list or Instruction Induction) | RLPrompt folder | hf:NAME[:CONFIG]")


@app.command()
def searchers():
    """List searchers and their options (set with -o key=value)."""
    from rich.table import Table

    from promptsearch import registry

    con = _console()
    for name in registry.searchers.names():
        cls = registry.searchers.get(name)
        table = Table(title=f"{name}: {(cls.__doc__ or '').strip().splitlines()[0] if cls.__doc__ else ''}", title_justify="left")
        table.add_column("option")
        table.add_column("type")
        table.add_column("default")
        table.add_column("help")
        for opt, typ, default, help_ in cls.config_help():
            table.add_row(opt, typ, repr(default), help_)
        con.print(table)


@app.command()
def runs(
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Only runs of this task."),
    limit: int = typer.Option(20, help="How many of the newest runs."),
    db: Optional[Path] = DbOpt,
):
    """List stored runs, newest first."""
    from datetime import datetime

    from promptsearch.errors import PromptSearchError

    from rich.markup import escape
    from rich.table import Table

    store = _store(db)
    rows = store.runs(task, limit)
    con = _console()
    if not rows and task:
        known = sorted({r.task for r in store.runs(None, limit=100_000)})
        if known:  # a name that matches nothing in a database that has runs: say so, as leaderboard does
            raise PromptSearchError(f"No runs of task {task!r} in {store.path}.{_did_you_mean(task, known)} "
                                    f"Tasks with runs: {', '.join(known)}.")
    if not rows:
        con.print(f"No runs in {store.path} yet. Start one with `promptsearch run`.")
        return
    # Like `git log --oneline`: a short id (its random tail, which `show` and `report` accept),
    # short model names, and the prompt cut to what is left of the line.
    table = Table(title=f"Runs in {store.path}", title_justify="left", box=None, pad_edge=False, padding=(0, 1))
    cells = [[short_id(r.id, [x.id for x in rows]), datetime.fromtimestamp(r.created).strftime("%m-%d %H:%M"),
              escape(r.task[:18]), r.searcher, escape(_short_model(r.model)[:18]),
              f"{r.dev_score:.3f}" if r.dev_score is not None else "–",
              f"{r.test_score:.3f}" if r.test_score is not None else "–", escape(" ".join(r.best_text.split()))]
             for r in rows]
    names = ("run", "when", "task", "searcher", "model", "dev", "test", "best prompt")
    widths = [max(len(col), *(len(c[j]) for c in cells)) for j, col in enumerate(names)]
    # every column keeps its width; only the prompt is cut to what is left of the line
    widths[-1] = max(12, min(widths[-1], con.width - sum(widths[:-1]) - len(names)))
    for col, width in zip(names, widths):
        table.add_column(col, no_wrap=True, overflow="ellipsis", min_width=width, max_width=width)
    for c in cells:
        table.add_row(*c)
    con.print(table)
    con.print("[dim]promptsearch show RUN (the short id, or the whole one) for the details[/dim]")


def short_id(run_id: str, others: list[str]) -> str:
    """The id's random tail, lengthened until no other listed run ends the same way."""
    for n in (4, 9, len(run_id)):
        tail = run_id[-n:]
        if sum(o.endswith(tail) for o in others) == 1:
            return tail
    return run_id


def _short_model(model: str) -> str:
    kind, _, rest = model.partition(":")
    if kind == "embedded":
        return "embedded"
    if kind == "hf" and "/" in rest:
        return "hf:" + rest.rstrip("/").rsplit("/", 1)[-1]
    return model


@app.command()
def show(
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id (or a unique prefix)."),
    db: Optional[Path] = DbOpt,
    as_json: bool = JsonOpt,
):
    """Show one stored run: candidates, test comparison, cost and reproducibility record."""
    store = _store(db)
    doc = json.loads(store.get_run(run_id).result)
    if as_json:
        print(dumps(doc, indent=2))
        return
    con = _console()
    _print_run(con, doc)
    rec = doc["record"]
    con.print(f"Task hash {doc['task']['hash']} · template {rec['task_template']!r} · seed {doc['seed']} · "
              f"versions {', '.join(f'{k} {v}' for k, v in rec['versions'].items())}")


@app.command()
def export(
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id (or a unique prefix)."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory to create (must not exist)."),
    db: Optional[Path] = DbOpt,
):
    """Write a run's best prompt for use outside promptsearch: a soft prompt as a PEFT adapter
    (`PeftModel.from_pretrained(base, DIR)`), a discrete prompt as DIR/prompt.json."""
    import shutil

    from promptsearch.errors import PromptSearchError

    store = _store(db)
    doc = json.loads(store.get_run(run_id).result)
    cand = doc["best"]["candidate"]
    if output.exists():
        raise PromptSearchError(f"'{output}' already exists; export writes a new directory, give another --output.")
    if cand.get("soft_prompt"):
        saved = doc["record"].get("searcher_notes", {}).get("saved")
        if not saved or not (Path(saved) / "adapter_config.json").exists():
            raise PromptSearchError(f"Run {doc['run_id']}: its soft prompt was not saved or is gone ({saved}); "
                                    "run the search again to export it.")
        shutil.copytree(saved, output)
        _console().print(f"Wrote the PEFT adapter to {output} (load with PeftModel.from_pretrained(base_model, '{output}'))")
        return
    if not (cand.get("instruction") or cand.get("demos") or cand.get("trigger") or cand.get("knn")):
        raise PromptSearchError(f"Run {doc['run_id']}: the best prompt is the empty prompt; there is nothing to export.")
    rec = doc["record"]
    out = {"run_id": doc["run_id"], "task": doc["task"]["name"], "model": doc["model"]["model"],
           "template": cand.get("template") or rec["task_template"], "instruction": cand.get("instruction", ""),
           "trigger_ids": cand.get("trigger"), "trigger_text": cand.get("trigger_text"),
           "labels": cand.get("labels") or rec.get("labels"), "demo_ids": cand.get("demos", []),
           **_export_demos(doc, cand), "harness": doc.get("harness", "zero-shot"),
           "dev": doc["best"]["dev"], "test": doc["best"]["test"],
           "how": "prompt = instruction + blank line (if any) + template with {input} filled and {trigger} replaced by "
                  "the trigger (ids, or its text); the answer is the label word the model is likeliest to say next."}
    output.mkdir(parents=True)
    _write(output / "prompt.json", dumps(out, indent=2) + "\n")
    _console().print(f"Wrote {output / 'prompt.json'}")


def _export_demos(doc: dict, cand: dict) -> dict:
    """The demos' text and answer when the run's task still loads unchanged; kNN selection
    as what it is (per input, the k nearest train inputs by the target's embeddings)."""
    from promptsearch.evaluation.render import answer_text
    from promptsearch.report.run_report import stored_task

    out: dict = {}
    if cand.get("knn"):
        out["demo_select"] = {"knn": cand["knn"], "pool": "train", "embedding": "target model, last hidden states "
                              "mean-pooled over the input's tokens, cosine", "order": "nearest last"}
    task = stored_task(doc) if cand.get("demos") else None
    if task is not None:
        by_id = {e.id: e for e in task.train}
        out["demos"] = [{"id": i, "input": by_id[i].input, "answer": answer_text(task, by_id[i])}
                        for i in cand["demos"] if i in by_id]
    return out


@app.command()
def leaderboard(
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Only this task."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, md, html, json or csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of the terminal."),
    db: Optional[Path] = DbOpt,
):
    """Compare stored runs: rows are (searcher, model, harness), columns are tasks."""
    from promptsearch.errors import PromptSearchError
    from promptsearch.report import leaderboard as lb

    formats = {"md": lb.to_markdown, "html": lb.to_html, "json": lb.to_json, "csv": lb.to_csv, "table": lb.to_text}
    if fmt not in formats:
        raise PromptSearchError(f"Unknown format '{fmt}'. Use one of: {', '.join(formats)}.")
    store = _store(db)
    docs = [json.loads(r.result) for r in store.runs(task, limit=100_000)]
    if not docs:
        raise PromptSearchError(f"No runs{f' of task {task!r}' if task else ''} in {store.path}; start one with `promptsearch run`.")
    board = lb.build(docs, task)
    if fmt == "table" and output is None:
        _console().print(lb.to_table(board))
        return
    text = formats[fmt](board)
    if output is None:
        sys.stdout.write(text)
        return
    _write(output, text)
    _console().print(f"Wrote {output}")


@app.command()
def report(
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id (or a unique prefix)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="HTML file to write (default: run-RUN.html)."),
    db: Optional[Path] = DbOpt,
):
    """Write one standalone HTML page for a run: plots, top candidates, per-example differences, record."""
    from promptsearch.report.run_report import render

    store = _store(db)
    run = store.get_run(run_id)
    html = render(json.loads(run.result), store.run_tests(run.id))
    output = output or Path(f"run-{run.id}.html")
    _write(output, html)
    _console().print(f"Wrote {output}")


def _write(path: Path, text: str) -> None:
    """Write whole or not at all: a temp file renamed into place."""
    from promptsearch.errors import PromptSearchError

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise PromptSearchError(f"Cannot write '{path}': {e.strerror}.") from None


@cache_app.command("stats")
def cache_stats(db: Optional[Path] = DbOpt):
    """Cached answers per model and request kind."""
    from rich.table import Table

    store = _store(db)
    rows = store.cache_stats()
    table = Table(title=f"Cache in {store.path}", title_justify="left")
    for col in ("model", "kind", "entries", "tokens"):
        table.add_column(col, justify="right" if col in ("entries", "tokens") else "left")
    for r in rows:
        table.add_row(r["backend"], r["kind"], str(r["entries"]), f"{r['tokens']:,}")
    size = store.path.stat().st_size if store.path.exists() else 0
    con = _console()
    con.print(table)
    con.print(f"{sum(r['entries'] for r in rows)} entries; database file {size / 1e6:.1f} MB")


@cache_app.command("clear")
def cache_clear(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Only this model's entries (as shown by `cache stats`)."),
    db: Optional[Path] = DbOpt,
):
    """Delete cached answers (runs are kept)."""
    from promptsearch.errors import PromptSearchError

    store = _store(db)
    if model:
        known = sorted({r["backend"] for r in store.cache_stats()})
        if model not in known:
            raise PromptSearchError(f"No cached answers of model {model!r} in {store.path}; nothing deleted."
                                    f"{_did_you_mean(model, known)}"
                                    + (f" Models in the cache: {', '.join(known)}." if known else ""))
    n = store.cache_clear(model)
    _console().print(f"Deleted {n} cached answers.")


def _did_you_mean(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f" Did you mean: {close[0]}?" if close else ""


def _store(db: Optional[Path]):
    from promptsearch.settings import get_settings
    from promptsearch.store.db import Store

    return Store(db or get_settings().db_path)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
