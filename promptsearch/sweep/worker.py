"""One trial = one ordinary run (the runner's `run_search`), in whatever process an executor
gives it. A trial whose earlier attempt was killed picks up that run's checkpoints where the
searcher keeps them (same configuration, no live owner), and its answers from the cache.

    python -m promptsearch.sweep.worker CONFIG_JSON DB   # what the local executor starts

prints `phase: ...` lines while it runs and `result: {...}` (or `error: ...`) at the end."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable


def _resumable(config: dict, db: str | None) -> str | None:
    """An interrupted run of exactly this configuration (its checkpoints), if one is there."""
    from promptsearch.runner import interrupted_runs
    from promptsearch.settings import get_settings

    want = {"task": config["task"], "model": config["model"], "searcher": config["searcher"],
            "options": config["options"], "seed": config["seed"], "harness": config["harness"]}
    for run in interrupted_runs(db or get_settings().db_path):
        try:
            args = json.loads((run.path / "run.json").read_text())
        except (OSError, ValueError):
            continue
        if {k: args.get(k) for k in want} == want:
            return run.run_id
    return None


def run_trial(config: dict, db: str | None, phase: Callable[[str], None] | None = None) -> dict[str, Any]:
    from promptsearch.budget import Budget
    from promptsearch.runner import run_search
    from promptsearch.sweep.spec import resolve_task

    resume = _resumable(config, db)
    if resume and phase:
        phase(f"resuming run {resume} from its checkpoints")
    if resume:
        doc = run_search(config["task"], resume=resume, db=db, phase=phase)
    else:  # a task with changes goes in loaded (such runs keep no resume arguments; the cache still replays them)
        doc = run_search(resolve_task(config["task"]), model=config["model"], searcher=config["searcher"],
                         options=config["options"], budget=Budget(**config["budget"]), seed=config["seed"], db=db,
                         phase=phase, harness=None if config["harness"] == "zero-shot" else config["harness"],
                         baseline_shots=config.get("baseline_shots"))
    best = doc["best"]
    return {"run_id": doc["run_id"], "dev": best["dev"]["mean"], "test": best["test"]["mean"],
            "calls": doc["cost"]["search"]["calls"], "cache_hits": doc["cost"]["search"]["cache_hits"]}


def main() -> None:
    from promptsearch.errors import PromptSearchError
    from promptsearch.records import redact

    config, db = json.loads(sys.argv[1]), (sys.argv[2] or None)

    def phase(message: str) -> None:
        print("phase: " + " ".join(str(message).split()), flush=True)

    try:
        print("result: " + json.dumps(run_trial(config, db, phase)), flush=True)
    except PromptSearchError as e:
        print("error: " + redact(str(e)).splitlines()[0], flush=True)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - recorded with the trial; the sweep goes on
        print(f"error: {type(e).__name__}: {redact(str(e)).splitlines()[0] if str(e) else ''}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
