"""The best discrete prompt already stored for a task and model: where soft prompt tuning
(`init=best`) and the demos searcher (`instruction=best`) start from."""

from __future__ import annotations

from promptsearch.errors import PromptSearchError
from promptsearch.tasks.base import Task


def best_stored_prompt(
    task: Task,
    store,
    model_id: str,
    option: str,
    skip: tuple[str, ...] = (),
    triggers: bool = True,
    task_hash: str = "",
) -> tuple[str, dict]:
    """(text, source) of the stored run with the best dev score for this task and model, runs
    on these very splits first (`task_hash`: the whole task's, where the search was given only
    the gate's selection fold of dev); `skip` leaves out searchers, `triggers` lets a
    trigger's text count. One line naming `option` when there is none."""
    runs = store.runs(task=task.name, limit=200) if store is not None else []
    task_hash = task_hash or task.hash()
    best = None  # (same task data, dev score, text, source)
    for r in runs:
        if r.model != model_id or r.searcher in skip or r.dev_score is None:
            continue
        doc = r.document()
        # the run's pick, and the search's own best where a baseline beat it on dev
        for entry in (doc.best, doc.search_best):
            cand = entry.candidate
            if cand.get("soft_prompt") or not entry.dev:
                continue
            text = cand.get("instruction") or (cand.get("trigger_text") if triggers else "") or ""
            dev, test = entry.dev.mean, entry.test.mean if entry.test else None
            rank = (
                r.task_hash == task_hash,
                dev,
                text,
                {
                    "run_id": r.id,
                    "searcher": r.searcher,
                    "same_task_data": r.task_hash == task_hash,
                    "dev": dev,
                    "test": test,
                    "text": text,
                },
            )
            if text and (best is None or rank[:2] > best[:2]):
                best = rank
    if best is None:
        raise PromptSearchError(
            f"{option}: no discrete prompt is stored for task '{task.name}' and model "
            f"'{model_id}'; run a discrete searcher first (e.g. --searcher ape)."
        )
    return best[2], best[3]
