"""The Python API: `search()` and `evaluate()`, taking names, paths or objects."""

from __future__ import annotations

from typing import Any, Callable

from promptsearch.budget import Budget
from promptsearch.candidates import Candidate
from promptsearch.evaluation.evaluator import EvalResult
from promptsearch.evaluation.scorers import Scorer
from promptsearch.tasks.base import Task


def search(
    task: Task | str,
    *,
    model: Any = None,
    searcher: str = "baseline",
    budget: Budget | None = None,
    seed: int = 0,
    scorer: str | Scorer | None = None,
    harness: str | None = None,
    db: str | None = None,
    select_by: str = "accuracy",
    gate: float | None = None,
    race_level: float | None = None,
    select_on: str = "dev",
    **options: Any,
) -> dict[str, Any]:
    """Find the best prompt for `task` on its dev split and report it on test against baselines.

    `task`: a Task, a built-in name, or a path. `model`: "embedded" (default), "hf:<id or path>",
    or a backend object. `scorer`: a registered name or any `(prediction, example) -> float`.
    `harness`: e.g. "fewshot:k=4", "cot", "sc:n=5,temperature=0.7", or "fewshot:k=4+cot+sc:n=5".
    `select_by` ("accuracy", "gold_prob", or "auto": gold_prob where labels are scored),
    `gate` (a level such as 0.9, or None: pick on the whole dev split), `race_level` (racing's
    level such as 0.8, or None: by rank) and `select_on` ("dev" or "train+dev"): how the run
    picks its answer (README, "How a run picks its answer").
    Searcher options go as keyword arguments (e.g. `shots=8`). Returns the run document
    (schema `promptsearch.run/1`); the run is stored in the database.
    """
    from promptsearch.runner import run_search
    from promptsearch.selection import Selection

    return run_search(
        task,
        model=model,
        searcher=searcher,
        options={k: str(v) for k, v in options.items()},
        budget=budget,
        seed=seed,
        scorer=scorer,
        db=db,
        harness=harness,
        selection=Selection(select_by, gate, race_level=race_level, select_on=select_on),
    )


def evaluate(
    task: Task | str,
    prompt: str | Candidate = "",
    *,
    model: Any = None,
    split: str = "test",
    scorer: str | Scorer | None = None,
    harness: str | None = None,
    db: str | None = None,
    limit: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> EvalResult:
    """Score one prompt (instruction text or a Candidate) on one split of `task`."""
    from promptsearch.runner import run_eval

    cand = prompt if isinstance(prompt, Candidate) else Candidate(instruction=prompt, name="prompt")
    result, _ = run_eval(
        task, cand, model=model, split=split, scorer=scorer, db=db, limit=limit, harness=harness, progress=progress
    )
    return result
