"""Run a sweep: the trials not finished yet go to an executor; every status lands in the
store (`SweepTrial`), so a rerun skips finished trials and starts the others again."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from promptsearch.store.models import SweepTrial
from promptsearch.sweep.spec import Spec, Trial


@dataclass
class Progress:
    """What the sweep's live line shows: counts, and each running trial's phase."""

    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    running: dict[str, str] = field(default_factory=dict)  # trial label -> phase

    def line(self) -> str:
        pending = self.total - self.done - self.failed - len(self.running)
        return f"{self.done} done · {len(self.running)} running · {self.failed} failed · {pending} pending" + (
            f" ({self.skipped} finished earlier)" if self.skipped else ""
        )


def run_sweep(
    spec: Spec, store, executor, db: str | None, on_change: Callable[[Progress, Trial, str, object], None] | None = None
) -> tuple[dict[str, SweepTrial], Progress]:
    """Every trial of `spec` finished (or failed): their rows by key, and the counts."""
    keys = {t.key(): t for t in spec.trials}
    rows = store.trials(list(keys))
    progress = Progress(total=len(keys))
    todo = [t for k, t in keys.items() if rows.get(k) is None or rows[k].status != "done"]
    progress.done = progress.skipped = len(keys) - len(todo)
    if todo:
        executor.prepare()  # a cluster that cannot be joined stops the sweep before it writes anything
    for trial in todo:
        key = trial.key()
        row = rows.get(key) or SweepTrial(key=key, sweep=spec.name, config=json.dumps(trial.config(), sort_keys=True))
        row.status, row.error = "pending", ""
        store.put_trial(row)
        rows[key] = row

    def on_event(trial: Trial, kind: str, info: object) -> None:
        row, label = rows[trial.key()], trial.label()
        if kind == "start":
            row.status, row.attempts = "running", row.attempts + 1
            progress.running[label] = "starting"
        elif kind == "phase":
            progress.running[label] = str(info)
            if on_change:
                on_change(progress, trial, kind, info)
            return
        elif kind == "retry":
            row.error = str(info)
            progress.running.pop(label, None)
        elif kind == "done":
            row.status, row.run_id, row.error = "done", info["run_id"], ""
            progress.done += 1
            progress.running.pop(label, None)
        elif kind == "failed":
            row.status, row.error = "failed", str(info)
            progress.failed += 1
            progress.running.pop(label, None)
        store.put_trial(row)
        if on_change:
            on_change(progress, trial, kind, info)

    if todo:
        executor.run(spec, todo, db, on_event)
    return rows, progress
