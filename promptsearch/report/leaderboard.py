"""The leaderboard: rows are (searcher with its method options, target model, harness),
columns are tasks; soft prompt tuning and soft prefix tuning are two rows.

Each cell comes from the newest stored run for that row and task (newest, not best: picking
the best of several runs would overstate the result). Schema `promptsearch.leaderboard/1`
is documented in the README.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from promptsearch.document import Finalist, RunDocument, Score

SCHEMA = "promptsearch.leaderboard/1"
SHORT = 60


def reference_baseline(doc: RunDocument) -> Finalist | None:
    """The task's baseline a cell is compared with: its first manual instruction, or the
    empty prompt for tasks without one."""
    by_name = {b.name: b for b in doc.baselines}
    return by_name.get("manual-1") or by_name.get("empty")


def shorten(text: str, n: int = SHORT) -> str:
    from promptsearch.text import shorten as cut

    return cut(text, n)


def build(docs: list[RunDocument], task: str | None = None) -> dict[str, Any]:
    """`docs` are run documents, newest first (as `Store.runs` returns them)."""
    cells: dict[tuple[str, str, str], dict[str, dict]] = {}
    counts: dict[tuple[str, str, str, str], int] = {}
    for doc in docs:
        t = doc.task.name
        if task and t != task:
            continue
        row = (doc.label, doc.model_name, doc.harness)
        counts[(*row, t)] = counts.get((*row, t), 0) + 1
        if t in cells.get(row, {}):
            continue  # an older run of the same row and task
        base, best = reference_baseline(doc), doc.best
        cost = doc.cost.total
        cells.setdefault(row, {})[t] = {
            "run_id": doc.run_id,
            "test": best.test and best.test.to_dict(),
            "baseline": None
            if base is None
            else {
                "name": base.name,
                "test": base.test and base.test.to_dict(),
                "best_minus_baseline": base.best_minus_baseline and base.best_minus_baseline.to_dict(),
            },
            "best_prompt": best.prompt,
            "best_prompt_short": shorten(best.prompt),
            # the search's own best lost to a baseline on dev, and the run returned that baseline
            "returned_baseline": best.name if best.returned_baseline else None,
            "cost": cost.to_dict(),
        }
    tasks = sorted({t for row in cells.values() for t in row})
    rows = []
    for (searcher, model, harness), by_task in cells.items():
        for t, cell in by_task.items():
            cell["runs"] = counts[(searcher, model, harness, t)]
        rows.append(
            {
                "searcher": searcher,
                "model": model,
                "harness": harness,
                "cells": by_task,
                "mean_win_rate": _mean_win_rate((searcher, model, harness), cells, tasks),
            }
        )
    rows.sort(
        key=lambda r: (-(r["mean_win_rate"] if r["mean_win_rate"] is not None else -1), r["searcher"], r["model"])
    )
    return {"schema": SCHEMA, "tasks": tasks, "rows": rows}


def _mean_win_rate(row, cells, tasks) -> float | None:
    """Per task, the share of other rows this row beats on test (ties count half); then the
    mean over the tasks where it and at least one other row have a score."""
    rates = []
    for t in tasks:
        mine = cells[row].get(t)
        others = [c[t]["test"]["mean"] for r, c in cells.items() if r != row and t in c]
        if mine is None or not others:
            continue
        m = mine["test"]["mean"]
        rates.append(sum(1.0 if m > o else 0.5 if m == o else 0.0 for o in others) / len(others))
    return round(sum(rates) / len(rates), 4) if rates else None


# --- formats --------------------------------------------------------------------------


def format_score(s: Score | dict | None, with_n: bool = True) -> str:
    """{mean, stderr, n} as "0.767 ± 0.039 (n=116)"; "–" when there is no score."""
    if not s:
        return "–"
    if isinstance(s, Score):
        s = s.to_dict()
    se = f" ± {s['stderr']:.3f}" if s.get("stderr") is not None else ""
    return f"{s['mean']:.3f}{se}" + (f" (n={s['n']})" if with_n else "")


def _cell_text(cell: dict | None) -> tuple[str, str]:
    if cell is None:
        return "–", ""
    score = format_score(cell["test"])
    if cell.get("returned_baseline"):
        score += f" · returned baseline {cell['returned_baseline']}"
    b = cell["baseline"]
    if b is None:
        return score, ""
    d = b["best_minus_baseline"]
    return score, f"{d['diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] vs {b['name']}"


def _cost_text(cell: dict) -> str:
    c = cell["cost"]
    cached = f" (+{c['cache_hits']} cached)" if c["cache_hits"] else ""
    dollars = f"${c['dollars']:.2f}" + (" + price unknown" if c.get("unpriced_calls") else "")
    return f"{c['calls']} calls{cached}, {c['tokens']:,} tok, {c['seconds']:.0f} s, {dollars}"


def _wr(row: dict) -> str:
    return "–" if row["mean_win_rate"] is None else f"{row['mean_win_rate']:.2f}"


def to_json(board: dict) -> str:
    return json.dumps(board, ensure_ascii=False, indent=2)


def to_csv(board: dict) -> str:
    """One line per (row, task): long format, so any tool can pivot it."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(
        [
            "searcher",
            "model",
            "harness",
            "task",
            "test_mean",
            "test_stderr",
            "n",
            "baseline",
            "diff_vs_baseline",
            "ci_low",
            "ci_high",
            "best_prompt",
            "calls",
            "cache_hits",
            "tokens",
            "seconds",
            "dollars",
            "mean_win_rate",
            "run_id",
            "runs",
            "returned_baseline",
        ]
    )
    for row in board["rows"]:
        for t in board["tasks"]:
            cell = row["cells"].get(t)
            if cell is None:
                continue
            b = cell["baseline"] or {}
            d = b.get("best_minus_baseline", {})
            c = cell["cost"]
            w.writerow(
                [
                    row["searcher"],
                    row["model"],
                    row["harness"],
                    t,
                    cell["test"]["mean"],
                    cell["test"]["stderr"],
                    cell["test"]["n"],
                    b.get("name", ""),
                    d.get("diff", ""),
                    d.get("ci_low", ""),
                    d.get("ci_high", ""),
                    cell["best_prompt"],
                    c["calls"],
                    c["cache_hits"],
                    c["tokens"],
                    c["seconds"],
                    c["dollars"],
                    row["mean_win_rate"],
                    cell["run_id"],
                    cell["runs"],
                    cell.get("returned_baseline") or "",
                ]
            )
    return out.getvalue()


def _md(text: str) -> str:
    """Prompt text is untrusted: keep it from breaking the table or becoming markup."""
    import html

    return (
        html.escape(" ".join(text.split()))
        .replace("|", "\\|")
        .replace("`", "\\`")
        .replace("*", "\\*")
        .replace("_", "\\_")
    )


def to_markdown(board: dict) -> str:
    head = ["searcher", "model", "harness", *board["tasks"], "mean win rate"]
    lines = ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
    for row in board["rows"]:
        cells = []
        for t in board["tasks"]:
            cell = row["cells"].get(t)
            score, diff = _cell_text(cell)
            cells.append(
                score
                if cell is None
                else f"{score}<br>{diff}<br>“{_md(cell['best_prompt_short'])}”<br>{_cost_text(cell)}"
            )
        lines.append(
            "| " + " | ".join([_md(row["searcher"]), _md(row["model"]), _md(row["harness"]), *cells, _wr(row)]) + " |"
        )
    return "\n".join(lines) + "\n"


def to_html(board: dict, title: str = "promptsearch leaderboard") -> str:
    from html import escape

    head = "".join(f"<th>{escape(t)}</th>" for t in board["tasks"])
    body = []
    for row in board["rows"]:
        tds = []
        for t in board["tasks"]:
            cell = row["cells"].get(t)
            if cell is None:
                tds.append("<td class='empty'>–</td>")
                continue
            score, diff = _cell_text(cell)
            tds.append(
                f"<td><div class='score'>{escape(score)}</div><div class='diff'>{escape(diff)}</div>"
                f"<details><summary>{escape(cell['best_prompt_short'])}</summary><pre>{escape(cell['best_prompt'])}</pre>"
                f"<div class='meta'>run {escape(cell['run_id'])} · {cell['runs']} run(s)</div></details>"
                f"<div class='cost'>{escape(_cost_text(cell))}</div></td>"
            )
        body.append(
            f"<tr><th class='row'>{escape(row['searcher'])}<br><small>{escape(row['model'])} · "
            f"{escape(row['harness'])}</small></th>{''.join(tds)}<td class='wr'>{_wr(row)}</td></tr>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{CSS}</style></head><body>
<h1>{escape(title)}</h1>
<p>Cells: test score of the prompt the run returned (mean ± standard error, n; "returned baseline X" where the
search's own best lost to baseline X on dev), its difference to the task's baseline
with a 95% paired bootstrap interval, the best prompt (click for the full text) and the cost.
Rows are ordered by mean win rate across tasks.</p>
<table id="leaderboard"><thead><tr><th>searcher · model · harness</th>{head}<th>mean win rate</th></tr></thead>
<tbody>{"".join(body)}</tbody></table>
</body></html>
"""


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.4em .6em;vertical-align:top;text-align:left}
thead th{background:#f3f3f3}.score{font-weight:600}.diff,.cost,.meta,small{color:#555;font-size:.85em}
pre{white-space:pre-wrap;max-width:40em;background:#f8f8f8;padding:.5em}td.wr{font-weight:600;text-align:right}
img{max-width:100%;border:1px solid #ddd}.num{text-align:right}
"""


def to_text(board: dict) -> str:
    """The terminal table as plain text, for `--format table --output FILE`."""
    from rich.console import Console

    con = Console(record=True, width=200, file=io.StringIO())
    con.print(to_table(board))
    return con.export_text()


def to_table(board: dict):
    from rich.markup import escape  # prompt text must not be read as rich markup
    from rich.table import Table

    table = Table(title="Leaderboard (newest run per row and task)", title_justify="left", show_lines=True)
    table.add_column("searcher · model · harness")
    for t in board["tasks"]:
        table.add_column(t, overflow="fold")
    table.add_column("mean win rate", justify="right")
    for row in board["rows"]:
        cells = []
        for t in board["tasks"]:
            cell = row["cells"].get(t)
            score, diff = _cell_text(cell)
            cells.append(
                score if cell is None else escape(f"{score}\n{diff}\n“{cell['best_prompt_short']}”\n{_cost_text(cell)}")
            )
        table.add_row(escape(f"{row['searcher']}\n{row['model']}\n{row['harness']}"), *cells, _wr(row))
    return table
