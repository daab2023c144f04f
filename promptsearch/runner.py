"""A run: search on dev, then score the best candidate and the baselines once on test,
compare them pairwise, and store everything that reproduces the run."""

from __future__ import annotations

import json
import math
import os
import platform
import secrets
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

from promptsearch import registry
from promptsearch.backends.base import Backend
from promptsearch.budget import Budget
from promptsearch.candidates import Candidate
from promptsearch.cost import Usage
from promptsearch.errors import BudgetExhausted, PromptSearchError, RunInterrupted
from promptsearch.evaluation.evaluator import EvalResult, Evaluator
from promptsearch.evaluation.harness import Harness, parse_harness
from promptsearch.evaluation.scorers import Scorer, resolve_scorer
from promptsearch.evaluation.stats import paired_bootstrap
from promptsearch.records import clean, rank_candidates
from promptsearch.searchers.base import SearchContext, Searcher, build_config
from promptsearch.searchers.baseline import baseline_candidates
from promptsearch.settings import get_settings
from promptsearch.store.cache import CachedBackend
from promptsearch.store.db import Store
from promptsearch.store.models import CandidateRow, Run, TestResult
from promptsearch.tasks.base import Task
from promptsearch.tasks.loaders import load_task

RUN_SCHEMA = "promptsearch.run/1"
EVAL_SCHEMA = "promptsearch.eval/1"
PLAN_SCHEMA = "promptsearch.plan/1"
PACKAGES = ("promptsearch", "torch", "transformers", "trl", "peft", "numpy", "sqlmodel", "openai", "tenacity")


@dataclass
class Setup:
    task: Task
    backend: CachedBackend
    store: Store
    metric: str


def prepare(
    task: Task | str,
    model: Any = None,
    scorer: str | Scorer | None = None,
    db: str | None = None,
    dry_run: bool = False,
) -> Setup:
    """Resolve and validate everything a run needs before anything runs or is written.
    `dry_run`: the model is a stand-in that answers without computing (see
    promptsearch.backends.planning) and the cache is read, never written."""
    from promptsearch.backends import resolve_backend

    settings = get_settings()
    task = load_task(task) if isinstance(task, str) else task.validate()
    metric, _ = resolve_scorer(scorer or task.metric)
    store = Store(db or settings.db_path)  # checked before any model is resolved or prepared
    inner = (
        resolve_backend(model or settings.default_model, settings) if model is None or isinstance(model, str) else model
    )
    if not isinstance(inner, Backend):
        raise PromptSearchError(
            f"The model {type(inner).__name__} is not a promptsearch backend: subclass "
            "promptsearch.backends.Backend and declare its capabilities (docs/architecture.md)."
        )
    if isinstance(inner, CachedBackend) and not dry_run:
        return Setup(task, inner, store, metric)  # the caller's cache wrapper, as given
    if isinstance(inner, CachedBackend):
        inner = inner.inner
    if dry_run:
        from promptsearch.backends.planning import PlanningBackend

        inner = PlanningBackend(inner)
    return Setup(task, CachedBackend(inner, store, write=not dry_run), store, metric)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _scores(r: EvalResult | None) -> dict | None:
    if r is None:
        return None
    return {"mean": round(r.mean, 4), "stderr": None if r.stderr != r.stderr else round(r.stderr, 4), "n": r.n}


def _round(extras: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in extras.items()}


def _per_candidate(history: list[EvalResult]) -> list[dict]:
    """One entry per distinct candidate: its mean over every dev example it was scored on
    (racing scores a candidate in several slices), in the order candidates first appeared."""
    seen: dict[str, dict] = {}
    for r in history:
        entry = seen.setdefault(
            r.candidate.key(),
            {
                "step": r.step,
                "name": r.candidate.name,
                "prompt": r.candidate.describe(),
                "candidate": r.candidate.to_dict(),
                "scores": {},
            },
        )
        if r.extras.get("outside_search"):  # scored after the search, outside its budget (a soft readout)
            entry["outside_search"] = True
        entry["scores"].update(zip(r.example_ids, r.scores))
    out = []
    for e in seen.values():
        scores = e.pop("scores")
        out.append({**e, "dev_mean": round(sum(scores.values()) / len(scores), 4), "dev_n": len(scores)})
    return out


def _harness_record(h: Harness, task: Task) -> dict:
    """The harness settings and, for a fixed few-shot set, the demo ids it showed."""
    from promptsearch.tasks.base import Example

    rec = h.to_dict()
    if h.fewshot_k and not h.per_example:
        rec["demo_ids"] = [d.id for d in h.demos(task, Example("", "", ""))]
    return rec


def run_search(
    task: Task | str,
    model: Any = None,
    searcher: str | Searcher = "baseline",
    options: dict[str, str] | None = None,
    budget: Budget | None = None,
    seed: int = 0,
    scorer: str | Scorer | None = None,
    db: str | None = None,
    baseline_shots: int | None = None,
    harness: Harness | str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    phase: Callable[[str], None] | None = None,
    dry_run: bool = False,
    resume: str | None = None,
) -> dict[str, Any]:
    """Run a search and return its result document (schema `promptsearch.run/1`, README).
    With `dry_run`, nothing is computed or stored: the searcher runs its schedule against a
    stand-in model, and the plan (schema `promptsearch.plan/1`) counts the calls, tokens and
    dollars the real run would spend. `resume` continues an interrupted run of a searcher
    that checkpoints (its id, printed when it started), with the arguments it started with."""
    run_id = datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    if resume is not None:
        run_id, args = _resumable(resume, db)
        task, model, searcher, options, seed = (
            args["task"],
            args["model"],
            args["searcher"],
            args["options"],
            args["seed"],
        )
        budget, scorer, baseline_shots, harness = (
            Budget(**args["budget"]),
            args["scorer"],
            args["baseline_shots"],
            args["harness"],
        )
        db = db or args.get("db")
    if isinstance(searcher, str):
        cls = registry.searchers.get(searcher)
        searcher_obj = cls(build_config(cls, options or {}))
    elif isinstance(searcher, Searcher):
        searcher_obj = searcher
    else:
        raise PromptSearchError(
            f"The searcher {type(searcher).__name__} is not a promptsearch searcher: subclass "
            "promptsearch.searchers.base.Searcher (docs/architecture.md)."
        )
    task_spec, harness_spec = task, harness
    harness = harness if isinstance(harness, Harness) else parse_harness(harness)
    setup = prepare(task, model, scorer, db, dry_run=dry_run)
    task = setup.task
    budget = budget or Budget()
    say = phase or (lambda _m: None)
    started = time.time()
    evaluator = Evaluator(
        task, setup.backend, scorer or task.metric, budget=budget, progress=progress, harness=harness, phase=phase
    )

    evaluator.check_prices()
    searcher_obj.check(setup.backend)  # a target it cannot work with, a missing package: one line, nothing written
    workdir = setup.store.checkpoints() / run_id
    resume_hint = f"promptsearch run --resume {run_id}" + (f" --db {setup.store.where}" if db else "")
    context = SearchContext(seed=seed)
    if searcher_obj.checkpoints and not dry_run:
        context = SearchContext(seed=seed, workdir=workdir, resuming=resume is not None)
        if resume is None:
            # what `runs` lists and `--resume` reads; arguments given as objects (a loaded task,
            # a backend) cannot be written, so such a run is listed but cannot be resumed
            resumable = all(
                isinstance(x, (str, type(None))) for x in (task_spec, model, searcher, scorer)
            ) and not isinstance(harness_spec, Harness)
            workdir.mkdir(parents=True, exist_ok=True)
            (workdir / "run.json").write_text(
                json.dumps(
                    {
                        "task": task_spec if resumable else task.name,
                        "model": model if resumable else setup.backend.model_id,
                        "searcher": searcher_obj.name,
                        "options": options or {},
                        "seed": seed,
                        "budget": budget.to_dict(),
                        "scorer": scorer if resumable else None,
                        "baseline_shots": baseline_shots,
                        "harness": harness_spec if resumable else harness.spec,
                        "db": setup.store.where,
                        "pid": os.getpid(),
                        "started": started,
                        "resumable": resumable,
                    }
                )
            )
            if resumable:
                say(f"Run {run_id} keeps its checkpoints in {workdir}")
        elif (workdir / "run.json").exists():  # this process owns it now
            args = json.loads((workdir / "run.json").read_text())
            (workdir / "run.json").write_text(json.dumps({**args, "pid": os.getpid()}))
    say(f"Searching with '{searcher_obj.name}' on {len(task.dev)} dev examples")
    try:
        result = searcher_obj.search(task, evaluator, context)
    except KeyboardInterrupt:
        if _resumable_folder(workdir):  # the one hint that works: its checkpoints continue it
            raise RunInterrupted(f"Interrupted. Continue it with `{resume_hint}`.") from None
        raise
    except BudgetExhausted as e:
        _drop_if_empty(workdir, nothing_scored=True)
        raise PromptSearchError(f"The budget was spent before any candidate was scored ({e}); raise it.") from None
    except BaseException:
        _drop_if_empty(workdir)  # a run that failed before it checkpointed anything leaves nothing to resume
        raise
    history = list(evaluator.history)  # every dev scoring the search made, in order
    if not history or not math.isfinite(result.best_score):
        # nothing to report: no test calls, nothing stored
        _drop_if_empty(workdir, nothing_scored=True)
        why = f" ({result.stopped_by})" if result.stopped_by else ""
        raise PromptSearchError(f"The search scored no candidate on dev{why}; raise the budget.")
    search_cost = evaluator.cost  # scorings a searcher makes outside its budget (a readout) count as selection

    # The baselines follow the search's own settings where it has them (shots=8 on dev is
    # compared with 8-shot on test), capped to the train split; the record says what was used.
    cfg = searcher_obj.config
    if baseline_shots is None:
        baseline_shots = getattr(cfg, "shots", 4)
    baseline_shots = min(baseline_shots, len(task.train))
    baselines = baseline_candidates(
        task,
        shots=baseline_shots,
        seed=seed,
        balanced=getattr(cfg, "balanced", True),
        max_manual=getattr(cfg, "max_manual", 5),
    )
    finalists: list[Candidate] = [result.best] + [b for b in baselines if b.key() != result.best.key()]

    # The final pick, outside the search budget like test scoring: the search's best and the
    # baselines on the whole dev split (answers mostly cached), the best of them on dev wins.
    # A search that does not beat a baseline on dev returns that baseline, and says so.
    say(f"Checking the search's best against {len(baselines)} baselines on {len(task.dev)} dev examples")
    dev_eval = Evaluator(task, setup.backend, scorer or task.metric, progress=progress, harness=harness)
    devs = {c.key(): dev_eval.score(c, task.dev, split="dev") for c in finalists}
    select_cost = dev_eval.cost + evaluator.outside_cost
    picked = max(finalists, key=lambda c: (devs[c.key()].mean, c is result.best))  # a tie keeps the search's best

    say(
        f"Scoring the {'best prompt' if picked is result.best else 'pick'} and the baselines on "
        f"{len(task.test)} test examples"
    )
    test_eval = Evaluator(task, setup.backend, scorer or task.metric, progress=progress, harness=harness)
    tests = {c.key(): test_eval.score(c, task.test, split="test") for c in finalists}
    test_cost = test_eval.cost

    best_test = tests[picked.key()]
    baseline_docs = []
    for b in baselines:
        t = tests[b.key()]
        diff = paired_bootstrap(best_test.scores, t.scores, seed=seed)
        baseline_docs.append(
            {
                "name": b.name,
                "prompt": b.describe(),
                "candidate": b.to_dict(),
                "dev": _scores(devs[b.key()]),
                "test": _scores(t),
                "test_extras": _round(t.extras),
                "best_minus_baseline": diff.to_dict(),
            }
        )
    search_best = {
        "name": result.best.name,
        "prompt": result.best.describe(),
        "candidate": result.best.to_dict(),
        "dev": _scores(devs[result.best.key()]),
        "dev_in_search": round(result.best_score, 4),
        "test": _scores(tests[result.best.key()]),
        "test_extras": _round(tests[result.best.key()].extras),
    }
    if picked is not result.best:
        search_best["picked_minus_it"] = paired_bootstrap(
            best_test.scores, tests[result.best.key()].scores, seed=seed
        ).to_dict()
    total = search_cost + select_cost + test_cost
    if dry_run:
        return _plan(
            setup, task, searcher_obj, harness, budget, search_cost, select_cost + test_cost, result.stopped_by
        )
    doc: dict[str, Any] = {
        "schema": RUN_SCHEMA,
        "run_id": run_id,
        "created": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "task": {
            "name": task.name,
            "hash": task.hash(),
            "source": task.source,
            "metric": setup.metric,
            "sizes": {"train": len(task.train), "dev": len(task.dev), "test": len(task.test)},
        },
        "model": setup.backend.identity(),
        "searcher": {"name": searcher_obj.name, "method": searcher_obj.method(), "config": asdict(searcher_obj.config)},
        "harness": harness.spec,
        "seed": seed,
        "best": {
            "name": picked.name,
            "prompt": picked.describe(),
            "candidate": picked.to_dict(),
            "dev": _scores(devs[picked.key()]),
            "test": _scores(best_test),
            "test_extras": _round(best_test.extras),
            "picked": "search" if picked is result.best else "baseline",
        },
        "search_best": search_best,
        "baselines": baseline_docs,
        "candidates": rank_candidates(_per_candidate(history)),
        "dev_scorings": [
            {"step": r.step, "name": r.candidate.name, "dev_mean": round(r.mean, 4), "dev_n": r.n} for r in history
        ],
        "stopped_by": result.stopped_by,
        "cost": {
            "search": search_cost.to_dict(),
            "selection": select_cost.to_dict(),
            "test": test_cost.to_dict(),
            "total": total.to_dict(),
            "wall_seconds": round(time.time() - started, 2),
        },
        "from_cache": total.calls == 0,
        "db": setup.store.where,
        "record": {
            "task_template": task.template,
            "labels": task.labels,
            "instructions": task.instructions,
            "budget": budget.to_dict(),
            "baseline_shots": baseline_shots,
            "harness": _harness_record(harness, task),
            "searcher_notes": result.notes,
            "versions": package_versions(),
            "platform": platform.platform(),
            "argv": sys.argv[1:] if sys.argv and sys.argv[0].endswith("promptsearch") else [],
        },
    }
    doc = clean(doc)  # secrets (a key in --base-url, say) never reach the database or the output
    _store(setup.store, doc, tests, started)
    if workdir.exists():  # finished: its checkpoints are no longer needed
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return doc


def _resumable_folder(workdir: Path) -> bool:
    try:
        return json.loads((workdir / "run.json").read_text()).get("resumable", True)
    except (OSError, ValueError):
        return False


def _drop_if_empty(workdir: Path, nothing_scored: bool = False) -> None:
    """Remove a run folder that holds nothing to resume: only its run.json (no checkpoint
    was written), or whatever a search that scored no candidate left (its answers are in
    the cache; a rerun gets as far for free)."""
    if workdir.is_dir() and (nothing_scored or all(p.name == "run.json" for p in workdir.iterdir())):
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def checkpoint_root(db_path: str | Path) -> Path:
    """Where checkpointing runs keep their folders: beside an SQLite database
    (`promptsearch.db` -> `promptsearch.db.checkpoints/RUN/`); for a PostgreSQL URL, under
    PROMPTSEARCH_HOME (store/engines.py)."""
    from promptsearch.store.engines import checkpoint_dir

    return checkpoint_dir(db_path, get_settings().home)


@dataclass
class Interrupted:
    """A checkpoint folder whose run neither finished nor is running now."""

    run_id: str
    path: Path
    searcher: str
    task: str
    started: float | None
    bytes: int
    resumable: bool = True  # False: started with arguments that were objects (a loaded task): remove, not resume


def interrupted_runs(db_path: str | Path) -> list[Interrupted]:
    """Checkpoint folders beside the database that no live process owns: runs that were
    interrupted (Ctrl-C, a kill, a crash) and can be resumed or removed."""
    root = checkpoint_root(db_path)
    out = []
    for d in sorted(root.glob("*")) if root.is_dir() else []:
        try:
            args = json.loads((d / "run.json").read_text())
        except (OSError, ValueError):
            args = {}
        if _alive(args.get("pid")):
            continue
        size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        out.append(
            Interrupted(
                d.name,
                d,
                str(args.get("searcher", "?")),
                str(args.get("task", "?")),
                args.get("started"),
                size,
                bool(args) and args.get("resumable", True),
            )
        )
    return out


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _resumable(run_id: str, db: str | None) -> tuple[str, dict]:
    """The arguments an interrupted, checkpointing run started with."""
    runs = checkpoint_root(db or get_settings().db_path)
    found = [p for p in runs.glob("*") if p.name == run_id or p.name.endswith(run_id)] if runs.is_dir() else []
    if len(found) != 1 or not (found[0] / "run.json").exists():
        done = ""
        try:
            done = Store(db or get_settings().db_path).get_run(run_id).id
        except PromptSearchError:
            pass
        if done:
            raise PromptSearchError(
                f"Run {done} finished and is stored; there is nothing to resume (see `promptsearch show {done}`)."
            )
        raise PromptSearchError(
            f"No interrupted run '{run_id}' to resume in {runs}; only searchers that checkpoint "
            "(rl) can be resumed, by the id printed when the run started."
        )
    args = json.loads((found[0] / "run.json").read_text())
    if not args.get("resumable", True):
        raise PromptSearchError(
            f"Run {found[0].name} was started with a loaded task or model (the Python API, or a "
            "sweep task with changes), which its folder cannot hold, so it cannot be resumed from "
            "there; start it again the same way (its answers come from the cache), and "
            "`promptsearch runs --clean` removes the folder."
        )
    return found[0].name, args


def _plan(
    setup: Setup,
    task: Task,
    searcher_obj: Searcher,
    harness: Harness,
    budget: Budget,
    search: Usage,
    test: Usage,
    stopped_by: str,
) -> dict[str, Any]:
    total = search + test
    return {
        "schema": PLAN_SCHEMA,
        "task": {"name": task.name, "sizes": {"train": len(task.train), "dev": len(task.dev), "test": len(task.test)}},
        "model": setup.backend.identity(),
        "searcher": {"name": searcher_obj.name, "config": asdict(searcher_obj.config)},
        "harness": harness.spec,
        "budget": budget.to_dict(),
        "calls": total.calls,
        "cached": total.cache_hits,
        "tokens": total.tokens,
        "dollars": None if total.unpriced_calls else round(total.dollars, 6),
        "unpriced_calls": total.unpriced_calls,
        "search": search.to_dict(),
        "test": test.to_dict(),
        "stopped_by": stopped_by,
        "note": "An estimate: tokens at ~4 characters each, every generation at its full length, "
        "and as many candidates as the searcher can propose. Nothing was computed or stored.",
    }


def _store(store: Store, doc: dict, tests: dict[str, EvalResult], started: float) -> None:
    import json

    run = Run(
        id=doc["run_id"],
        created=started,
        task=doc["task"]["name"],
        task_hash=doc["task"]["hash"],
        searcher=doc["searcher"]["name"],
        model=doc["model"]["model"],
        harness=doc["harness"],
        seed=doc["seed"],
        best_name=doc["best"]["name"],
        best_text=doc["best"]["prompt"],
        dev_score=doc["best"]["dev"]["mean"],
        test_score=doc["best"]["test"]["mean"],
        result=json.dumps(doc, ensure_ascii=False, allow_nan=False),
    )
    cands = [
        CandidateRow(
            run_id=run.id,
            step=c["step"],
            name=c["name"],
            text=c["prompt"],
            candidate=json.dumps(c["candidate"]),
            dev_score=c["dev_mean"],
            dev_n=c["dev_n"],
        )
        for c in doc["candidates"]
    ]
    rows = [
        TestResult(run_id=run.id, candidate=r.candidate.name, example_id=eid, score=s, prediction=p)
        for r in tests.values()
        for eid, s, p in zip(r.example_ids, r.scores, r.predictions)
    ]
    store.save_run(run, cands, rows)


def run_eval(
    task: Task | str,
    candidate: Candidate,
    model: Any = None,
    split: str = "test",
    scorer: str | Scorer | None = None,
    db: str | None = None,
    limit: int | None = None,
    harness: Harness | str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[EvalResult, dict[str, Any]]:
    """Score one candidate on one split; returns the result and its document (`promptsearch.eval/1`)."""
    harness = harness if isinstance(harness, Harness) else parse_harness(harness)
    setup = prepare(task, model, scorer, db)
    examples = setup.task.split(split)[: limit or None]
    if not examples:
        raise PromptSearchError(f"Task '{setup.task.name}' has no examples in the {split} split.")
    ev = Evaluator(setup.task, setup.backend, scorer or setup.task.metric, progress=progress, harness=harness)
    res = ev.score(candidate, examples, split="eval")
    doc = {
        "schema": EVAL_SCHEMA,
        "task": {"name": setup.task.name, "hash": setup.task.hash(), "metric": setup.metric},
        "model": setup.backend.identity(),
        "split": split,
        "harness": harness.spec,
        "harness_record": _harness_record(harness, setup.task),
        "prompt": candidate.describe(),
        "candidate": candidate.to_dict(),
        "score": _scores(res),
        "extras": _round(res.extras),
        "examples": [
            {"id": i, "prediction": p, "score": s} for i, p, s in zip(res.example_ids, res.predictions, res.scores)
        ],
        "cost": res.cost.to_dict(),
        "from_cache": res.cost.calls == 0,
    }
    return res, clean(doc)


__all__ = ["run_search", "run_eval", "prepare", "Usage"]
