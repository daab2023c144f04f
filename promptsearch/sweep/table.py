"""The sweep's table: rows searcher (with its method options and harness), columns task,
the test score of what each run returned (mean over seeds; a returned baseline is named,
with the search's own best beside it) and its difference from the sweep's bar with a paired
bootstrap 95% CI. The bar is each task's manual prompt (`manual-1`, scored on test in every
run); a dataset's seeds share its test set, so each example's scores are averaged over the
seeds before resampling."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from promptsearch.store.models import SweepTrial


def collect(store, rows: dict[str, SweepTrial]) -> dict[tuple[str, str], dict]:
    """(row label, task) -> {"tests": [per-seed test mean], "scores": [per-seed example scores], "bar": [...]}."""
    from promptsearch.sweep.spec import task_name

    cells: dict[tuple[str, str], dict] = {}
    for row in rows.values():
        if row.status != "done":
            continue
        config = json.loads(row.config)
        doc = store.get_run(row.run_id).document()
        best, own = doc.best, doc.search_best  # what the run returned; the search's own best
        tests = store.run_tests(row.run_id)
        mine = {t.example_id: t.score for t in tests if t.candidate == best.name}
        bar = {t.example_id: t.score for t in tests if t.candidate == "manual-1"}
        label = doc.label + ("" if config["harness"] == "zero-shot" else f" · {config['harness']}")
        changed = _changed_selection(config.get("selection"))
        if changed:  # runs picked otherwise than by default are rows of their own
            label += " · " + ", ".join(f"{k}={v}" for k, v in sorted(changed.items()))
        cell = cells.setdefault(
            (label, task_name(config["task"])), {"tests": [], "scores": [], "bar": [], "own": [], "returned": []}
        )
        ids = sorted(mine)
        cell["tests"].append(best.test.mean)
        cell["own"].append(own.test.mean)
        cell["returned"].append(best.name if best.returned_baseline else "")
        cell["scores"].append([mine[i] for i in ids])
        cell["bar"].append([bar.get(i) for i in ids] if bar and set(bar) >= set(ids) else None)
    return cells


def markdown(cells: dict[tuple[str, str], dict], failed: list[SweepTrial] | None = None) -> str:
    from promptsearch.evaluation.stats import paired_bootstrap

    tasks = sorted({t for _, t in cells})
    labels = list(dict.fromkeys(label for label, _ in cells))
    out = ["| searcher | " + " | ".join(tasks) + " |", "|" + "---|" * (len(tasks) + 1)]
    for label in labels:
        row = []
        for task in tasks:
            c = cells.get((label, task))
            if not c:
                row.append("–")
                continue
            text = f"{statistics.mean(c['tests']):.3f}"
            same = len({len(s) for s in c["scores"]}) == 1
            if same and all(b is not None for b in c["bar"]):
                a = [statistics.mean(col) for col in zip(*c["scores"])]
                b = [statistics.mean(col) for col in zip(*c["bar"])]
                d = paired_bootstrap(a, b)
                mark = "**" if d.ci_low > 0 else ""
                text += f" ({mark}{d.diff:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]{mark})"
            returned = [r for r in c.get("returned", []) if r]
            if returned:  # the search's own best lost to a baseline on dev: say which, and what the search had
                text += (
                    f" · returned {', '.join(sorted(set(returned)))} in {len(returned)}/{len(c['tests'])} "
                    f"(search's own best {statistics.mean(c['own']):.3f})"
                )
            row.append(text + (f" · {len(c['tests'])} seeds" if len(c["tests"]) > 1 else ""))
        out.append(f"| {label} | " + " | ".join(row) + " |")
    text = "\n".join(out) + (
        "\n\nTest accuracy of what each run returned (mean over seeds) and, in brackets, the "
        "difference from the manual prompt with its paired bootstrap 95% CI (bold: above zero). "
        "Where a run returned a baseline (its search's best lost to it on dev), the cell names "
        "it and gives the search's own best beside it."
    )
    from promptsearch.sweep.spec import task_name

    for t in failed or []:
        config = json.loads(t.config)
        text += f"\n\nFailed: {task_name(config['task'])} · {config['searcher']}: {t.error}"
    return text


def plot(cells: dict[tuple[str, str], dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({t for _, t in cells})
    labels = list(dict.fromkeys(label for label, _ in cells))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(tasks) + 3), 4))
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        xs = [j + i * width for j, t in enumerate(tasks) if (label, t) in cells]
        ys = [statistics.mean(cells[(label, t)]["tests"]) for t in tasks if (label, t) in cells]
        ax.bar(xs, ys, width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks)
    ax.set_ylabel("test score")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _changed_selection(selection: dict | None) -> dict:
    """The selection settings a trial changed from the defaults (trials of older sweeps list
    only what their spec gave)."""
    from promptsearch.selection import Selection

    if not selection:
        return {}
    defaults = Selection().to_dict()
    return {k: v for k, v in Selection.of(selection).to_dict().items() if v != defaults[k]}
