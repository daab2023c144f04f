"""A run: search on dev, then score the best candidate and the baselines once on test,
compare them pairwise, and store everything that reproduces the run."""

from __future__ import annotations

import math
import platform
import secrets
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable

from promptsearch import registry
from promptsearch.backends.base import Backend
from promptsearch.budget import Budget
from promptsearch.candidates import Candidate
from promptsearch.cost import Usage
from promptsearch.document import DevScoring, RunCost, RunDocument, RunRecord, SearcherInfo, TaskInfo, ranked
from promptsearch.errors import BudgetExhausted, PromptSearchError, RunInterrupted
from promptsearch.evaluation.evaluator import EvalResult, Evaluator
from promptsearch.evaluation.harness import Harness, parse_harness
from promptsearch.evaluation.scorers import Scorer, resolve_scorer
from promptsearch.finalists import Finalists, baselines_for, decide, rounded, scores
from promptsearch.records import clean, per_candidate
from promptsearch.runfolder import RunFolder, resumable_args
from promptsearch.searchers.base import SearchContext, Searcher, build_config
from promptsearch.selection import Plan, Selection, plan
from promptsearch.settings import get_settings
from promptsearch.store.cache import CachedBackend
from promptsearch.store.db import Store
from promptsearch.tasks.base import Task
from promptsearch.tasks.loaders import load_task

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
    selection: Selection | dict | None = None,
) -> dict[str, Any]:
    """Run a search and return its result document (schema `promptsearch.run/1`, README).
    With `dry_run`, nothing is computed or stored: the searcher runs its schedule against a
    stand-in model, and the plan (schema `promptsearch.plan/1`) counts the calls, tokens and
    dollars the real run would spend. `resume` continues an interrupted run of a searcher
    that checkpoints (its id, printed when it started), with the arguments it started with.
    `selection`: the selection score, the gate and racing's level (selection.py; default:
    `Selection()`, accuracy on the whole dev split, racing by rank)."""
    run_id = datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    if resume is not None:
        run_id, args = resumable_args(resume, db)
        task, model, searcher, options, seed, scorer, baseline_shots, harness = (
            args[k] for k in ("task", "model", "searcher", "options", "seed", "scorer", "baseline_shots", "harness")
        )
        budget, db, selection = Budget(**args["budget"]), db or args.get("db"), args.get("selection")
    selection = Selection.of(selection)
    spec = dict(task=task, model=model, searcher=searcher, options=options or {}, seed=seed, scorer=scorer)
    spec.update(baseline_shots=baseline_shots, harness=harness, selection=selection.to_dict())  # what a folder keeps
    searcher_obj = _searcher(searcher, options)
    harness = harness if isinstance(harness, Harness) else parse_harness(harness)
    setup = prepare(task, model, scorer, db, dry_run=dry_run)
    task, budget, say, started = setup.task, budget or Budget(), phase or (lambda _m: None), time.time()
    selection = _resolved_selection(selection, harness, task, setup.backend)
    chosen = plan(task, selection, seed, searcher_obj.trains_on_train, say)  # the confirmation fold stays unseen
    searched, split = chosen.searched, chosen.split
    evaluator = Evaluator(
        searched,
        setup.backend,
        scorer or task.metric,
        budget=budget,
        progress=progress,
        harness=harness,
        phase=phase,
        select_by=selection.select_by,
        race_level=selection.race_level,
    )
    evaluator.check_prices()
    searcher_obj.check(setup.backend)  # a target it cannot work with, a missing package: one line, nothing written
    folder = RunFolder.of(setup.store, run_id)
    context = _context(folder, searcher_obj, setup, spec, budget, started, say, resume, dry_run)
    held = f" ({len(split[1])} more held out to confirm its best)" if split else ""
    say(f"Searching with '{searcher_obj.name}' on {len(searched.dev)} dev examples{held}")
    hint = f"promptsearch run --resume {run_id}" + (f" --db {setup.store.where}" if db else "")
    outcome = _search(searcher_obj, searched, evaluator, context, folder, hint)
    search_cost = evaluator.cost  # now: the finalists' scorings go through the same backend after it
    baselines, shots = baselines_for(chosen.finals, searcher_obj, baseline_shots, seed)
    finals = decide(
        evaluator, outcome.best, outcome.best_score, baselines, shots, say, chosen.finals, chosen.selection, split, seed
    )
    if dry_run:
        tail = finals.select_cost + finals.test_cost
        return _plan(setup, task, searcher_obj, harness, budget, search_cost, tail, outcome.stopped_by)
    parts = (setup, searcher_obj, harness, budget, seed, chosen)
    built = _document(run_id, *parts, outcome, evaluator, search_cost, finals, started)
    doc = RunDocument.from_dict(clean(built.to_dict()))  # no secret reaches it
    setup.store.save_document(doc, finals.named_tests(), started)
    folder.remove()  # finished: its checkpoints are no longer needed
    return doc.to_dict()


def _model_record(setup) -> dict:
    """The model as records show it: the identity that keys the cache and, for a task with
    labels, how labels are scored (`loglikelihood`, `first_token` or `generate`)."""
    out = dict(setup.backend.identity())
    if setup.task.labels:
        out["scoring"] = setup.backend.label_scoring
    return out


def _resolved_selection(selection: Selection, harness: Harness, task: Task, backend) -> Selection:
    """`auto` made concrete; a selection score the run cannot compute is one line before
    anything is written. The backend is asked how it scores labels only when it matters (a
    server may be probed for it)."""
    if selection.select_by == "accuracy":
        return selection
    scores_labels = bool(task.labels) and not harness.generates(task, backend.label_scoring != "generate")
    if selection.select_by == "gold_prob" and not scores_labels:
        raise PromptSearchError(
            "--select-by gold_prob needs label scores (log-likelihoods or first-token log-probabilities), and with "
            f"harness '{harness.spec}' on "
            f"task '{task.name}' answers are generated; use --select-by accuracy."
        )
    return selection.resolved(scores_labels)


def _searcher(searcher: str | Searcher, options: dict[str, str] | None) -> Searcher:
    if isinstance(searcher, str):
        cls = registry.searchers.get(searcher)
        return cls(build_config(cls, options or {}))
    if isinstance(searcher, Searcher):
        return searcher
    raise PromptSearchError(
        f"The searcher {type(searcher).__name__} is not a promptsearch searcher: subclass "
        "promptsearch.searchers.base.Searcher (docs/architecture.md)."
    )


def _context(
    folder,
    searcher: Searcher,
    setup: Setup,
    spec: dict,
    budget: Budget,
    started: float,
    say,
    resume: str | None,
    dry_run: bool,
) -> SearchContext:
    """The search's context; for a searcher that checkpoints, its run folder, made (with what
    `runs` lists and `--resume` reads) or claimed (a resumed run)."""
    if not searcher.checkpoints or dry_run:
        return SearchContext(seed=spec["seed"], runs=setup.store, task_hash=setup.task.hash())
    if resume is not None:
        folder.claim()
        return SearchContext(
            seed=spec["seed"], workdir=folder.path, resuming=True, runs=setup.store, task_hash=setup.task.hash()
        )
    # arguments given as objects (a loaded task, a backend) cannot be written: such a run is listed, not resumable
    resumable = all(isinstance(spec[k], (str, type(None))) for k in ("task", "model", "searcher", "scorer"))
    resumable = resumable and not isinstance(spec["harness"], Harness)
    written = {
        **spec,
        "searcher": searcher.name,
        "budget": budget.to_dict(),
        "db": setup.store.where,
        "started": started,
    }
    if not resumable:
        written.update(
            task=setup.task.name,
            model=setup.backend.model_id,
            scorer=None,
            harness=getattr(spec["harness"], "spec", spec["harness"]),
        )
    folder.start(written, resumable)
    if resumable:
        say(f"Run {folder.path.name} keeps its checkpoints in {folder.path}")
    return SearchContext(seed=spec["seed"], workdir=folder.path, runs=setup.store, task_hash=setup.task.hash())


def _search(searcher: Searcher, task: Task, evaluator: Evaluator, context: SearchContext, folder, hint: str):
    """The search's outcome; a search that scored nothing, or stopped by an error before it
    checkpointed, leaves no folder behind; Ctrl-C in one that can resume says how."""
    try:
        outcome = searcher.search(task, evaluator, context)
    except KeyboardInterrupt:
        if folder.resumable:  # the one hint that works: its checkpoints continue it
            raise RunInterrupted(f"Interrupted. Continue it with `{hint}`.") from None
        raise
    except BudgetExhausted as e:
        folder.drop_if_empty(nothing_scored=True)
        raise PromptSearchError(f"The budget was spent before any candidate was scored ({e}); raise it.") from None
    except BaseException:
        folder.drop_if_empty()
        raise
    if not evaluator.history or not math.isfinite(outcome.best_score):  # nothing to report: no test calls or record
        folder.drop_if_empty(nothing_scored=True)
        why = f" ({outcome.stopped_by})" if outcome.stopped_by else ""
        raise PromptSearchError(f"The search scored no candidate on dev{why}; raise the budget.")
    return outcome


def _document(
    run_id: str,
    setup: Setup,
    searcher: Searcher,
    harness: Harness,
    budget: Budget,
    seed: int,
    chosen: Plan,
    outcome,
    evaluator: Evaluator,
    search: Usage,
    finals: Finalists,
    started: float,
) -> RunDocument:
    """The run document (schema promptsearch.run/1: document.py, README)."""
    task, history = setup.task, list(evaluator.history)
    select, test = finals.select_cost, finals.test_cost  # `search`: taken when the search ended
    total = search + select + test
    return RunDocument(
        run_id,
        datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        TaskInfo(
            task.name,
            task.hash(),
            task.source,
            setup.metric,
            {"train": len(task.train), "dev": len(task.dev), "test": len(task.test)},
        ),
        _model_record(setup),
        SearcherInfo(searcher.name, searcher.method(), asdict(searcher.config)),
        harness.spec,
        seed,
        best=finals.best_record(),
        search_best=finals.search_best_record(seed),
        baselines=finals.baseline_records(seed),
        confirmation=finals.confirmation,
        candidates=ranked(per_candidate(history)),
        dev_scorings=[DevScoring(r.step, r.candidate.name, round(r.mean, 4), r.n) for r in history],
        stopped_by=outcome.stopped_by,
        cost=RunCost(search, select, test, total, round(time.time() - started, 2)),
        from_cache=total.calls == 0,
        db=setup.store.where,
        record=RunRecord(
            task.template,
            task.labels,
            task.instructions,
            budget.to_dict(),
            chosen.record(),
            finals.baseline_shots,
            _harness_record(harness, task),
            outcome.notes,
            package_versions(),
            platform.platform(),
            sys.argv[1:] if sys.argv and sys.argv[0].endswith("promptsearch") else [],
        ),
    )


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
        "model": _model_record(setup),
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
        "model": _model_record(setup),
        "split": split,
        "harness": harness.spec,
        "harness_record": _harness_record(harness, setup.task),
        "prompt": candidate.describe(),
        "candidate": candidate.to_dict(),
        "score": scores(res).to_dict(),
        "extras": rounded(res.extras),
        "examples": [
            {"id": i, "prediction": p, "score": s} for i, p, s in zip(res.example_ids, res.predictions, res.scores)
        ],
        "cost": res.cost.to_dict(),
        "from_cache": res.cost.calls == 0,
    }
    return res, clean(doc)


__all__ = ["run_search", "run_eval", "prepare", "Usage"]
