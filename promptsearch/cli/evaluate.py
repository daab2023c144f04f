"""`promptsearch eval`: score one given prompt on one split."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

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
    fmt_score,
)
from promptsearch.records import dumps


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
    db: Optional[str] = DbOpt,
    as_json: bool = JsonOpt,
):
    """Score a given prompt on one split of a task."""
    from promptsearch.candidates import Candidate
    from promptsearch.errors import PromptSearchError
    from promptsearch.runner import run_eval
    from promptsearch.searchers.baseline import pick_demos
    from promptsearch.tasks.loaders import load_task

    configure_flags(base_url, concurrency)
    if prompt is not None and prompt_file is not None:
        raise PromptSearchError("Give either --prompt or --prompt-file, not both.")
    if prompt_file is not None:
        try:
            prompt = prompt_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise PromptSearchError(f"Cannot read prompt file '{prompt_file}': {e}.") from None
    t = load_task(task)
    cand = Candidate(instruction=prompt or "", demos=pick_demos(t, shots, seed), name="prompt")
    with Bar(enabled=sys.stderr.isatty()) as bar:
        _, doc = run_eval(
            t,
            cand,
            model=model,
            split=split,
            scorer=scorer,
            db=str(db) if db else None,
            limit=limit,
            harness=harness,
            progress=bar,
        )
    if not prompt and not shots:  # said once the scoring worked, so an error stays one line
        console(stderr=True).print("No --prompt given: scored the empty prompt (the template alone).")
    if as_json:
        print(dumps(doc, indent=2))
        return
    from rich.markup import escape

    con = console()
    con.print(
        f"[bold]{doc['task']['name']}[/bold] {split} · model {doc['model']['model']} · prompt: {escape(doc['prompt'])}"
    )
    con.print(
        f"{doc['task']['metric']}: [bold]{fmt_score(doc['score'])}[/bold] on {doc['score']['n']} examples"
        f" · harness {escape(doc['harness'])}"
    )
    extras = dict(doc["extras"])
    if extras.get("calibration"):
        con.print("  " + calibration_line(extras.pop("calibration")))
    if extras:
        con.print("  " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in extras.items()))
    con.print(f"Cost: {cost_line(doc['cost'])}" + ("  [cyan](all from the cache)[/cyan]" if doc["from_cache"] else ""))


def calibration_line(cal: dict) -> str:
    """'calibration: domain, 20 inputs (train+dev), bias negative 0.31, positive 0.69'"""
    from rich.markup import escape

    where = "the scored inputs" if cal["transductive"] else "train+dev"
    bias = ", ".join(f"{escape(lab)} {p:.2f}" for lab, p in cal["bias"].items())
    return f"calibration: {cal['mode']}, {cal['inputs']} inputs ({where}), bias {bias}"
