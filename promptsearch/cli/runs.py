"""`promptsearch runs`, `show` and `export`: the stored runs, one run, and its prompt for use elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from promptsearch.cli.common import DbOpt, JsonOpt, app, console, did_you_mean, open_store, write_file
from promptsearch.cli.run import print_run
from promptsearch.records import dumps

if TYPE_CHECKING:
    from promptsearch.document import RunDocument


@app.command()
def runs(
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Only runs of this task."),
    limit: int = typer.Option(20, help="How many of the newest runs."),
    clean: bool = typer.Option(
        False,
        "--clean",
        help="Remove the checkpoints of interrupted runs (they can no longer be resumed); stored runs are kept.",
    ),
    db: Optional[str] = DbOpt,
):
    """List stored runs, newest first, and interrupted runs that can be resumed."""
    from datetime import datetime

    from rich.markup import escape
    from rich.table import Table

    from promptsearch.errors import PromptSearchError
    from promptsearch.runfolder import RunFolder, interrupted_runs
    from promptsearch.text import shorten

    store = open_store(db)
    con = console()
    stale = interrupted_runs(store.url or store.path)
    if clean:
        for s in stale:
            RunFolder(s.path).remove()
        con.print(
            f"Removed the checkpoints of {len(stale)} interrupted run{'s' * (len(stale) != 1)} "
            f"({sum(s.bytes for s in stale) / 1e6:.1f} MB)."
        )
        return
    rows = store.runs(task, limit)
    if not rows and task:
        known = sorted({r.task for r in store.runs(None, limit=100_000)})
        if known:  # a name that matches nothing in a database that has runs: say so, as leaderboard does
            raise PromptSearchError(
                f"No runs of task {task!r} in {store.where}.{did_you_mean(task, known)} "
                f"Tasks with runs: {', '.join(known)}."
            )
    if not rows:
        con.print(f"No runs in {store.where} yet. Start one with `promptsearch run`.")
    else:
        # Like `git log --oneline`: a short id (its random tail, which `show` and `report`
        # accept), short model names, and the prompt cut to what is left of the line.
        table = Table(title=f"Runs in {store.where}", title_justify="left", box=None, pad_edge=False, padding=(0, 1))
        docs = [r.document() for r in rows]
        cells = [
            [
                short_id(r.id, [x.id for x in rows]),
                datetime.fromtimestamp(r.created).strftime("%m-%d %H:%M"),
                shorten(r.task, 18),
                d.label,
                shorten(_short_model(r.model), 18),
                shorten(r.harness, 24),
                f"{r.dev_score:.3f}" if r.dev_score is not None else "–",
                f"{r.test_score:.3f}" if r.test_score is not None else "–",
                ("[baseline] " if d.best.returned_baseline else "") + r.best_text,
            ]
            for r, d in zip(rows, docs)
        ]
        names = ("run", "when", "task", "searcher", "model", "harness", "dev", "test", "best prompt")
        widths = [max(len(col), *(len(c[j]) for c in cells)) for j, col in enumerate(names[:-1])]
        # every column keeps its width; only the prompt is cut, at a word and with an ellipsis, to what is left
        room = max(12, con.width - sum(widths) - 2 * (len(names) - 1) - 1)  # each column padded 1 on both sides
        for col, width in zip(names, [*widths, room]):
            table.add_column(col, no_wrap=True, min_width=width, max_width=width)
        for c in cells:
            table.add_row(*(escape(x) for x in c[:-1]), escape(shorten(c[-1], room)))
        con.print(table)
        if any(d.best.returned_baseline for d in docs):
            con.print(
                "[dim][baseline]: the search's own best lost to this baseline on dev, and the run returned it[/dim]"
            )
        con.print("[dim]promptsearch show RUN (the short id, or the whole one) for the details[/dim]")
    if stale:
        con.print(
            f"[yellow]{len(stale)} interrupted run{'s' * (len(stale) != 1)} with checkpoints in "
            f"{stale[0].path.parent}:[/yellow]"
        )
        for s in stale:
            when = datetime.fromtimestamp(s.started).strftime("%m-%d %H:%M") if s.started else "?"
            what = (
                f"{escape(s.searcher)} on {escape(s.task)}"
                if s.searcher != "?"
                else "(no run.json: not a run's folder)"
            )
            hint = (
                f"resume: promptsearch run --resume {escape(s.run_id)}" + (f" --db {escape(store.where)}" if db else "")
                if s.resumable
                else "cannot be resumed (started with a loaded task); its answers are in the cache"
            )
            con.print(f"  {escape(s.run_id)}  {when}  {what}  {s.bytes / 1e6:.1f} MB  {hint}")
        con.print("[dim]promptsearch runs --clean removes them[/dim]")


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
    db: Optional[str] = DbOpt,
    as_json: bool = JsonOpt,
):
    """Show one stored run: candidates, test comparison, cost and reproducibility record."""
    store = open_store(db)
    doc = store.get_run(run_id).document()
    if as_json:
        print(dumps(doc.to_dict(), indent=2))
        return
    con = console()
    print_run(con, doc)
    rec = doc.record
    con.print(
        f"Task hash {doc.task.hash} · template {rec.task_template!r} · seed {doc.seed} · "
        f"versions {', '.join(f'{k} {v}' for k, v in rec.versions.items())}"
    )


@app.command()
def export(
    run_id: str = typer.Argument(..., metavar="RUN", help="Run id (or a unique prefix)."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory to create (must not exist)."),
    search_best: bool = typer.Option(
        False,
        "--search-best",
        help="Export the search's own best, not the run's pick (they differ when a baseline beat the search on dev).",
    ),
    db: Optional[str] = DbOpt,
):
    """Write a run's best prompt for use outside promptsearch: a soft prompt as a PEFT adapter
    (`PeftModel.from_pretrained(base, DIR)`), a discrete prompt as DIR/prompt.json."""
    import shutil

    from promptsearch.errors import PromptSearchError

    store = open_store(db)
    doc = store.get_run(run_id).document()
    chosen = doc.search_best if search_best else doc.best
    cand = chosen.candidate
    if output.exists():
        raise PromptSearchError(f"'{output}' already exists; export writes a new directory, give another --output.")
    if cand.get("soft_prompt"):
        saved = doc.record.searcher_notes.get("saved")
        if not saved or not (Path(saved) / "adapter_config.json").exists():
            raise PromptSearchError(
                f"Run {doc.run_id}: its soft prompt was not saved or is gone ({saved}); "
                "run the search again to export it."
            )
        shutil.copytree(saved, output)
        console().print(
            f"Wrote the PEFT adapter to {output} (load with PeftModel.from_pretrained(base_model, '{output}'))"
        )
        return
    if not (cand.get("instruction") or cand.get("demos") or cand.get("trigger") or cand.get("knn")):
        hint = "" if search_best or not doc.best.returned_baseline else "; --search-best exports the search's own best"
        raise PromptSearchError(
            f"Run {doc.run_id}: the best prompt is the empty prompt; there is nothing to export{hint}."
        )
    rec = doc.record
    out = {
        "run_id": doc.run_id,
        "task": doc.task.name,
        "model": doc.model_name,
        "template": cand.get("template") or rec.task_template,
        "instruction": cand.get("instruction", ""),
        "trigger_ids": cand.get("trigger"),
        "trigger_text": cand.get("trigger_text"),
        "labels": cand.get("labels") or rec.labels,
        "demo_ids": cand.get("demos", []),
        **_export_demos(doc, cand),
        "harness": doc.harness,
        "dev": chosen.dev and chosen.dev.to_dict(),
        "test": chosen.test and chosen.test.to_dict(),
        "how": "prompt = instruction + blank line (if any) + template with {input} filled and {trigger} replaced by "
        "the trigger (ids, or its text); the answer is the label word the model is likeliest to say next.",
    }
    output.mkdir(parents=True)
    write_file(output / "prompt.json", dumps(out, indent=2) + "\n")
    console().print(f"Wrote {output / 'prompt.json'}")


def _export_demos(doc: RunDocument, cand: dict) -> dict:
    """The demos' text and answer when the run's task still loads unchanged; kNN selection
    as what it is (per input, the k nearest train inputs by the target's embeddings)."""
    from promptsearch.evaluation.render import answer_text
    from promptsearch.report.run_report import stored_task

    out: dict = {}
    if cand.get("knn"):
        out["demo_select"] = {
            "knn": cand["knn"],
            "pool": "train",
            "embedding": "target model, last hidden states mean-pooled over the input's tokens, cosine",
            "order": "nearest last",
        }
    task = stored_task(doc) if cand.get("demos") else None
    if task is not None:
        by_id = {e.id: e for e in task.train}
        out["demos"] = [
            {"id": i, "input": by_id[i].input, "answer": answer_text(task, by_id[i])}
            for i in cand["demos"]
            if i in by_id
        ]
    return out
