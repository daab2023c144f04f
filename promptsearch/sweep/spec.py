"""A sweep spec (YAML) and the trials it names.

    name: sst2-grid                # optional (default: the file's name)
    tasks: [sentiment]             # built-in names or task paths, or a task with changes:
    #   - {task: PATH, name: sst-2, instructions: [...], template: "...", labels: {...}, test_sample: 2000}
    models: [embedded]
    searchers:                     # a name, or {name: ..., options: {...}}
      - baseline
      - {name: demos, options: {shots: 8}}
    harnesses: [zero-shot, calibrate]
    seeds: [0, 1]
    budget: {max_seconds: 120}     # per trial: max_evals, max_calls, max_seconds, max_tokens, max_dollars
    resources: {num_cpus: 1, num_gpus: 0}   # per trial, for Ray
    retries: 2                     # a trial whose worker dies is started again this many times
    baseline_shots: 0              # the k-shot baseline each run scores beside its best (default: the searcher's)
    selection: {select_by: auto, gate: 0.9}   # how each run picks (README; default: accuracy, no gate)
    grids:                         # optional: several grids in one sweep, each one changing the keys above
      - {searchers: [ape], harnesses: [calibrate]}

A trial's key is the hash of its resolved configuration, so a rerun finds finished trials.
A task with changes (a mapping) is one task spec plus what the run changes in it: its manual
`instructions`, `template`, `labels` (label -> verbalizer), and `test_sample` (a fixed
class-stratified sample of the test split, seed 0); `name` labels it in the table.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from promptsearch.errors import PromptSearchError

GRID_KEYS = {"tasks", "models", "searchers", "harnesses", "seeds", "budget", "baseline_shots", "selection"}
SELECTION_KEYS = {"select_by", "gate", "race_level", "confirm_share", "select_on", "train_share"}
KEYS = GRID_KEYS | {"name", "resources", "retries", "db", "grids"}
TASK_KEYS = {"task", "name", "instructions", "template", "labels", "test_sample"}
SEARCHER_KEYS = {"name", "options"}
BUDGET_KEYS = ("max_evals", "max_calls", "max_seconds", "max_tokens", "max_dollars")


@dataclass(frozen=True)
class Trial:
    task: str
    model: str
    searcher: str
    options: tuple[tuple[str, str], ...]
    harness: str
    seed: int
    budget: tuple[tuple[str, float], ...]
    baseline_shots: int | None = None
    selection: tuple[tuple[str, Any], ...] = ()

    def config(self) -> dict[str, Any]:
        d = asdict(self)
        from promptsearch.selection import Selection

        d["options"], d["budget"] = dict(self.options), dict(self.budget)
        if d["baseline_shots"] is None:  # left out, so trials of specs without it keep their keys
            del d["baseline_shots"]
        # every setting, resolved; the whole-dev pick (how trials of specs without `selection` were
        # made) is left out, so their keys stay, whatever the defaults become
        chosen = Selection.of(dict(self.selection))
        if chosen == Selection.whole_dev():
            del d["selection"]
        else:
            d["selection"] = chosen.to_dict()
        return d

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()[:16]

    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        searcher = f"{self.searcher} ({opts})" if opts else self.searcher
        return f"{task_name(self.task)} · {searcher} · {self.harness} · seed {self.seed}"


@dataclass
class Spec:
    name: str
    trials: list[Trial]
    resources: dict[str, float] = field(default_factory=lambda: {"num_cpus": 1, "num_gpus": 0})
    retries: int = 2
    db: str | None = None


def _known_keys(entry: dict, keys: set[str], where: str) -> None:
    """One line for the first key `entry` does not take, with the closest one it does."""
    unknown = sorted(str(k) for k in set(entry) - keys)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], keys, n=1)
        raise PromptSearchError(
            f"{where}: unknown key '{unknown[0]}'."
            + (f" Did you mean: {close[0]}?" if close else "")
            + f" Keys: {', '.join(sorted(keys))}."
        )


def _list(doc: dict, key: str, where: str, default: list | None = None) -> list:
    value = doc.get(key, default)
    if value is None:
        raise PromptSearchError(f"{where}: '{key}' is missing; list at least one.")
    value = value if isinstance(value, list) else [value]
    if not value:
        raise PromptSearchError(f"{where}: '{key}' is empty, so the grid has no trials; list at least one.")
    return value


def load_spec(path: str | Path) -> Spec:
    """The spec at `path`, checked: one clear line for the first thing wrong in it."""
    import yaml

    p = Path(path)
    where = f"Sweep spec '{p}'"
    try:
        doc = yaml.safe_load(p.read_bytes().decode("utf-8"))
    except OSError as e:
        raise PromptSearchError(f"{where}: cannot read it ({e.strerror}).") from None
    except UnicodeDecodeError as e:
        raise PromptSearchError(
            f"{where}: not UTF-8 text (byte {e.start} cannot be read); save it as UTF-8 YAML."
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise PromptSearchError(f"{where}: not valid YAML{at}; check its indentation and quotes.") from None
    if not isinstance(doc, dict):
        raise PromptSearchError(f"{where}: expected a mapping with tasks, models, searchers, ...; see the README.")
    _known_keys(doc, KEYS, where)
    if not isinstance(doc.get("resources") or {}, dict):
        raise PromptSearchError(f"{where}: 'resources' takes num_cpus and num_gpus (numbers >= 0, per trial).")
    resources = {"num_cpus": 1, "num_gpus": 0, **(doc.get("resources") or {})}
    _known_keys(resources, {"num_cpus", "num_gpus"}, f"{where}, resources")
    if not all(isinstance(v, (int, float)) and v >= 0 for v in resources.values()):
        raise PromptSearchError(f"{where}: 'resources' takes num_cpus and num_gpus (numbers >= 0, per trial).")
    retries = doc.get("retries", 2)
    if not isinstance(retries, int) or retries < 0:
        raise PromptSearchError(f"{where}: 'retries' must be a whole number >= 0.")
    grids = doc.get("grids")
    if grids is None:
        trials = _grid(doc, where)
    else:
        if not isinstance(grids, list) or not grids or not all(isinstance(g, dict) for g in grids):
            raise PromptSearchError(
                f"{where}: 'grids' must be a list of mappings, each changing some of {', '.join(sorted(GRID_KEYS))}."
            )
        trials = []
        for i, g in enumerate(grids, 1):
            _known_keys(g, GRID_KEYS, f"{where}, grid {i}")
            base = {k: v for k, v in doc.items() if k in GRID_KEYS}
            trials += _grid({**base, **g}, f"{where}, grid {i}")
    return Spec(str(doc.get("name") or p.stem), list(dict.fromkeys(trials)), resources, retries, doc.get("db"))


def _grid(doc: dict, where: str) -> list[Trial]:
    """The trials of one grid (the product of its lists), checked."""
    from promptsearch import registry
    from promptsearch.budget import Budget
    from promptsearch.evaluation.harness import parse_harness
    from promptsearch.searchers.base import build_config

    searchers = []
    for i, s in enumerate(_list(doc, "searchers", where), 1):
        if isinstance(s, dict):
            _known_keys(s, SEARCHER_KEYS, f"{where}, searcher {i}")
        name, opts = (
            (s, {})
            if isinstance(s, str)
            else (s.get("name"), s.get("options") or {})
            if isinstance(s, dict)
            else (None, {})
        )
        if not isinstance(name, str) or not isinstance(opts, dict):
            raise PromptSearchError(f"{where}: searcher {i} must be a name or {{name: ..., options: {{...}}}}.")
        try:
            cls = registry.searchers.get(name)
            opts = {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in opts.items()}
            build_config(cls, opts)  # unknown options and values out of range stop here
        except PromptSearchError as e:
            raise PromptSearchError(f"{where}, searcher {i}: {e}") from None
        searchers.append((name, tuple(sorted(opts.items()))))
    harnesses = [str(h) for h in _list(doc, "harnesses", where, ["zero-shot"])]
    for h in harnesses:
        try:
            parse_harness(None if h == "zero-shot" else h)
        except PromptSearchError as e:
            raise PromptSearchError(f"{where}: {e}") from None
    seeds = _list(doc, "seeds", where, [0])
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise PromptSearchError(f"{where}: 'seeds' must be whole numbers, got {seeds!r}.")
    budget = doc.get("budget") or {}
    if not isinstance(budget, dict):
        raise PromptSearchError(f"{where}: 'budget' takes {', '.join(BUDGET_KEYS)} (per trial).")
    _known_keys(budget, set(BUDGET_KEYS), f"{where}, budget")
    try:
        Budget(**budget)
    except (PromptSearchError, TypeError) as e:
        raise PromptSearchError(f"{where}: {e}") from None
    shots = doc.get("baseline_shots")
    if shots is not None and (not isinstance(shots, int) or isinstance(shots, bool) or shots < 0):
        raise PromptSearchError(f"{where}: 'baseline_shots' must be a whole number >= 0.")
    selection = doc.get("selection") or {}
    if not isinstance(selection, dict):
        raise PromptSearchError(f"{where}: 'selection' takes {', '.join(sorted(SELECTION_KEYS))}.")
    _known_keys(selection, SELECTION_KEYS, f"{where}, selection")
    try:
        from promptsearch.selection import Selection

        Selection(**selection)
    except (PromptSearchError, TypeError) as e:
        raise PromptSearchError(f"{where}: {e}") from None
    tasks = [_task(t, i, where) for i, t in enumerate(_list(doc, "tasks", where), 1)]
    models = [str(m) for m in _list(doc, "models", where, ["embedded"])]
    budget_items = tuple(sorted((k, float(v)) for k, v in budget.items()))
    chosen = tuple(sorted(selection.items()))
    return [
        Trial(t, m, s, o, h, seed, budget_items, shots, chosen)
        for t, m, (s, o), h, seed in itertools.product(tasks, models, searchers, harnesses, seeds)
    ]


def _task(entry: Any, i: int, where: str) -> str:
    """A task entry as the trial keeps it: the spec string, or the canonical JSON of a task with changes."""
    if isinstance(entry, str):
        return entry
    if not isinstance(entry, dict) or not isinstance(entry.get("task"), str):
        raise PromptSearchError(
            f"{where}: task {i} must be a task spec or a mapping with 'task: SPEC' "
            f"and changes ({', '.join(sorted(TASK_KEYS - {'task'}))})."
        )
    _known_keys(entry, TASK_KEYS, f"{where}, task {i}")
    if "instructions" in entry and not (
        isinstance(entry["instructions"], list) and all(isinstance(x, str) for x in entry["instructions"])
    ):
        raise PromptSearchError(f"{where}: task {i}: 'instructions' must be a list of strings.")
    if "labels" in entry and not (isinstance(entry["labels"], dict) and entry["labels"]):
        raise PromptSearchError(f"{where}: task {i}: 'labels' must map each label to its verbalizer.")
    n = entry.get("test_sample")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise PromptSearchError(f"{where}: task {i}: 'test_sample' must be a whole number >= 1.")
    return json.dumps(entry, sort_keys=True)


def task_name(task: str) -> str:
    """How a trial's task is shown: its `name` when it has changes, else its spec."""
    if task.startswith("{"):
        d = json.loads(task)
        return str(d.get("name") or d["task"])
    return task


def resolve_task(task: str):
    """A trial's task for the runner: the spec string itself, or, for a task with changes,
    the loaded task with them applied (instructions, template, labels, a stratified test sample)."""
    if not task.startswith("{"):
        return task
    import random
    from dataclasses import replace

    from promptsearch.tasks.loaders import load_task

    d = json.loads(task)
    t = load_task(d["task"])
    changes = {k: d[k] for k in ("instructions", "template") if k in d}
    if "labels" in d:
        changes["labels"] = {str(k): str(v) for k, v in d["labels"].items()}
    if "name" in d:
        changes["name"] = str(d["name"])
    n = d.get("test_sample")
    if n is not None and n < len(t.test):  # equal shares per label, seed 0 (the few-shot table's AG News)
        by: dict[str, list] = {}
        for e in t.test:
            by.setdefault(e.label, []).append(e)
        rng = random.Random(0)
        changes["test"] = [e for lab in sorted(by) for e in rng.sample(by[lab], min(len(by[lab]), n // len(by)))]
    return replace(t, **changes).validate()
