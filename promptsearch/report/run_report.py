"""One standalone HTML page for one run: plots (matplotlib, embedded as PNG), the top
candidates, per-example differences between the best prompt and the baseline, and the
reproducibility record. All prompt text is escaped: models wrote it."""

from __future__ import annotations

import base64
import io
import json
from html import escape
from typing import Any

from promptsearch.document import RunDocument, ranked
from promptsearch.report.leaderboard import CSS, reference_baseline
from promptsearch.report.leaderboard import format_score as _score


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def budget_plot(doc: RunDocument) -> str:
    """Dev score of every scoring (a racing rung counts as one) against the budget spent by
    then, with the running best as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cands = sorted(doc.dev_scorings or doc.candidates, key=lambda c: c.step)
    spent, xs, ys, best, run_best = 0, [], [], [], float("-inf")
    for c in cands:
        spent += c.dev_n
        run_best = max(run_best, c.dev_mean)
        xs.append(spent)
        ys.append(c.dev_mean)
        best.append(run_best)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.scatter(xs, ys, s=28, color="#1f77b4", alpha=0.8, label="candidate (dev)", zorder=3)
    ax.step(xs, best, where="post", color="#d62728", linewidth=2, label="running best")
    ax.set_xlabel("budget spent (example scorings on dev)")
    ax.set_ylabel(f"dev {doc.task.metric}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return _png(fig)


def training_plot(doc: RunDocument) -> str | None:
    """The searcher's own learning curve, when it has one: RL's mean and max reward per step,
    a soft prompt's training loss, AutoPrompt's minibatch loss; dev scores on a second axis."""
    notes = doc.record.searcher_notes
    if notes.get("curve"):
        rows, x, train = notes["curve"], "step", [("mean_reward", "mean reward"), ("max_reward", "max reward")]
        dev_key = "dev_best"
    elif notes.get("steps") and isinstance(notes["steps"], list):
        rows, x, train, dev_key = notes["steps"], "step", [("loss", "train loss")], "dev"
    elif notes.get("iterations") and isinstance(notes["iterations"], list):
        rows, x, train, dev_key = notes["iterations"], "iteration", [("loss", "minibatch loss")], "dev"
    else:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    for key, label in train:
        pts = [(r[x], r[key]) for r in rows if r.get(key) is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, label=label)
    ax.set_xlabel(x)
    ax.set_ylabel("train signal")
    ax.grid(alpha=0.3)
    dev = [(r[x], r[dev_key]) for r in rows if r.get(dev_key) is not None]
    if dev:
        ax2 = ax.twinx()
        ax2.plot([p[0] for p in dev], [p[1] for p in dev], "s--", color="#d62728", label=f"dev {doc.task.metric}")
        ax2.set_ylabel(f"dev {doc.task.metric}")
        ax2.legend(loc="lower right")
    ax.legend(loc="upper left")
    return _png(fig)


def diff_plot(pairs: list[tuple[float, float]], base_name: str) -> str:
    """How the best prompt and the baseline split the test examples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    diffs = [b - a for b, a in pairs]
    groups = {
        "best better": sum(d > 0 for d in diffs),
        "same": sum(d == 0 for d in diffs),
        f"{base_name} better": sum(d < 0 for d in diffs),
    }
    fig, ax = plt.subplots(figsize=(7, 2.4))
    ax.barh(list(groups), list(groups.values()), color=["#2ca02c", "#999999", "#d62728"])
    for i, v in enumerate(groups.values()):
        ax.text(v, i, f" {v}", va="center")
    ax.set_xlabel("test examples")
    ax.invert_yaxis()
    return _png(fig)


def stored_task(doc: RunDocument):
    """The run's task, when it can still be loaded unchanged (same hash); else None."""
    from promptsearch.errors import PromptSearchError
    from promptsearch.tasks import load_task

    for spec in (doc.task.source, doc.task.name):
        if not spec or spec.startswith("builtin:"):
            continue
        try:
            task = load_task(spec)
        except (PromptSearchError, OSError):
            continue
        if task.hash() == doc.task.hash:
            return task
    return None


def example_inputs(doc: RunDocument) -> dict[str, str]:
    """Example texts by id, when the run's task can still be loaded unchanged (same hash)."""
    task = stored_task(doc)
    return {e.id: e.input for e in task.test} if task is not None else {}


def render(doc: RunDocument, tests: list[Any]) -> str:
    """`tests`: the run's TestResult rows (candidate, example_id, score, prediction)."""
    from promptsearch.records import clean

    doc = RunDocument.from_dict(clean(doc.to_dict()))  # runs stored before redaction existed get it here
    best, task = doc.best, doc.task
    base = reference_baseline(doc)
    by_cand: dict[str, dict[str, Any]] = {}
    for t in tests:
        by_cand.setdefault(t.candidate, {})[t.example_id] = t
    top = ranked(doc.candidates)[:10]
    top_rows = "".join(
        f"<tr><td class='num'>{i}</td><td>{escape(c.name)}</td><td><pre>{escape(c.prompt)}</pre></td>"
        f"<td class='num'>{c.dev_mean:.3f}</td><td class='num'>{c.dev_n}</td>"
        f"<td class='num'>{escape(c.selection_cell)}</td></tr>"
        for i, c in enumerate(top, 1)
    )
    base_rows = "".join(
        f"<tr><td>{escape(b.name)}</td><td class='num'>{_score(b.dev)}</td><td class='num'>{_score(b.test)}</td>"
        f"<td class='num'>{d.diff:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]</td><td class='num'>{d.p_value:.3f}</td></tr>"
        for b in doc.baselines
        if (d := b.best_minus_baseline) is not None
    )
    diff_section = "<p>No baseline to compare with.</p>"
    if base is not None and base.candidate == best.candidate:
        diff_section = f"<p>The best prompt is the baseline <b>{escape(base.name)}</b> itself.</p>"
    elif base is not None:
        mine, theirs = by_cand.get(best.name, {}), by_cand.get(base.name, {})
        ids = [i for i in mine if i in theirs]
        pairs = [(mine[i].score, theirs[i].score) for i in ids]
        differing = [i for i in ids if mine[i].score != theirs[i].score]
        inputs = example_inputs(doc)
        rows = "".join(
            f"<tr><td>{escape(i)}</td><td>{escape(inputs.get(i, ''))}</td><td>{escape(mine[i].prediction)}</td><td class='num'>{mine[i].score:g}</td>"
            f"<td>{escape(theirs[i].prediction)}</td><td class='num'>{theirs[i].score:g}</td>"
            f"<td class='num'>{mine[i].score - theirs[i].score:+g}</td></tr>"
            for i in differing[:200]
        )
        plot = (
            f"<img id='diff-plot' alt='per-example differences' src='{diff_plot(pairs, base.name)}'>" if pairs else ""
        )
        diff_section = (
            f"<p>Best prompt vs <b>{escape(base.name)}</b> on the same {len(ids)} test examples; "
            f"{len(differing)} differ{' (first 200 shown)' if len(differing) > 200 else ''}.</p>{plot}"
            f"<table id='differences'><thead><tr><th>example</th><th>input</th><th>best: prediction</th><th>score</th>"
            f"<th>{escape(base.name)}: prediction</th><th>score</th><th>difference</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    sb = doc.search_best
    picked = ""
    if doc.confirmation is not None:
        passed = "Confirmed" if doc.confirmation.passed else "Not confirmed"
        picked = f"<p id='confirmation'><b>{passed}</b>: {escape(doc.confirmation.line(sb.name))}</p>"
    elif best.returned_baseline:
        picked = (
            f"<p id='picked-baseline'><b>The search did not beat the baseline on dev</b>: its best, "
            f"{escape(sb.name)} (dev {_score(sb.dev)}, test {_score(sb.test)}), is below "
            f"{escape(best.name)} on dev, so the run returns that baseline.</p>"
        )
    ro = doc.record.searcher_notes.get("readout")
    readout = ""
    if ro:
        dev = f", dev {ro['dev']:.3f} as a discrete prompt" if "dev" in ro else ""
        readout = (
            f"<p id='readout'>Readout: <code>{escape(repr(ro['text']))}</code> (ids "
            f"{' '.join(map(str, ro['ids']))}{dev}): the nearest vocabulary token to each learned vector. "
            "The learned vectors are not text; this is what they are closest to.</p>"
        )
    curve = training_plot(doc)
    training_section = (
        (
            f"<h2>Learning curve</h2>\n<img id='training-plot' alt='training signal and dev "
            f"score per step' src='{curve}'>\n"
        )
        if curve
        else ""
    )
    data = doc.to_dict()
    record = json.dumps(
        {k: data[k] for k in ("run_id", "created", "task", "model", "searcher", "harness", "seed", "cost", "record")},
        indent=2,
        ensure_ascii=False,
    )
    title = f"promptsearch run {doc.run_id}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{CSS}</style></head><body>
<h1>{escape(title)}</h1>
<p>Task <b>{escape(task.name)}</b> ({task.sizes["train"]}/{task.sizes["dev"]}/{task.sizes["test"]} train/dev/test,
{escape(task.metric)}) · model <b>{escape(doc.model_name)}</b> · searcher <b>{escape(doc.searcher.name)}</b>
· harness {escape(doc.harness)} · seed {doc.seed}</p>
<h2>Best prompt</h2>
<pre id="best-prompt">{escape(best.prompt)}</pre>
<p>dev {_score(best.dev)} · test <b>{_score(best.test)}</b></p>{picked}{readout}
{training_section}<h2>Score against budget</h2>
<img id="budget-plot" alt="dev score of each candidate against budget spent" src="{budget_plot(doc)}">
<h2>Top candidates (dev)</h2>
<table id="candidates"><thead><tr><th>#</th><th>name</th><th>prompt</th><th>dev</th><th>n</th><th>selection [95% CI]</th></tr></thead><tbody>{top_rows}</tbody></table>
<h2>Test: best vs baselines</h2>
<table id="baselines"><thead><tr><th>baseline</th><th>dev</th><th>test</th><th>best − baseline [95% CI]</th><th>p</th></tr></thead><tbody>{base_rows}</tbody></table>
<h2>Per-example differences</h2>
{diff_section}
<h2>Reproducibility record</h2>
<pre id="record">{escape(record)}</pre>
</body></html>
"""
