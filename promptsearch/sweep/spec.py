"""A sweep spec (YAML) and the trials it names.

    name: sst2-grid                # optional (default: the file's name)
    tasks: [sentiment]             # built-in names or task paths
    models: [embedded]
    searchers:                     # a name, or {name: ..., options: {...}}
      - baseline
      - {name: demos, options: {shots: 8}}
    harnesses: [zero-shot, calibrate]
    seeds: [0, 1]
    budget: {max_seconds: 120}     # per trial: max_evals, max_calls, max_seconds, max_tokens, max_dollars
    resources: {num_cpus: 1, num_gpus: 0}   # per trial, for Ray
    retries: 2                     # a trial whose worker dies is started again this many times

A trial's key is the hash of its resolved configuration, so a rerun finds finished trials.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from promptsearch.errors import PromptSearchError

KEYS = {"name", "tasks", "models", "searchers", "harnesses", "seeds", "budget", "resources", "retries", "db"}
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

    def config(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"], d["budget"] = dict(self.options), dict(self.budget)
        return d

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()[:16]

    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        return f"{self.task} · {self.searcher}{f' ({opts})' if opts else ''} · {self.harness} · seed {self.seed}"


@dataclass
class Spec:
    name: str
    trials: list[Trial]
    resources: dict[str, float] = field(default_factory=lambda: {"num_cpus": 1, "num_gpus": 0})
    retries: int = 2
    db: str | None = None


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

    from promptsearch import registry
    from promptsearch.budget import Budget
    from promptsearch.evaluation.harness import parse_harness
    from promptsearch.searchers.base import build_config

    p = Path(path)
    where = f"Sweep spec '{p}'"
    try:
        doc = yaml.safe_load(p.read_text())
    except OSError as e:
        raise PromptSearchError(f"{where}: cannot read it ({e.strerror}).") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise PromptSearchError(f"{where}: not valid YAML{at}; check its indentation and quotes.") from None
    if not isinstance(doc, dict):
        raise PromptSearchError(f"{where}: expected a mapping with tasks, models, searchers, ...; see the README.")
    unknown = sorted(set(doc) - KEYS)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], KEYS, n=1)
        raise PromptSearchError(f"{where}: unknown key '{unknown[0]}'." + (f" Did you mean: {close[0]}?" if close else "")
                                + f" Keys: {', '.join(sorted(KEYS))}.")
    searchers = []
    for i, s in enumerate(_list(doc, "searchers", where), 1):
        name, opts = (s, {}) if isinstance(s, str) else (s.get("name"), s.get("options") or {}) if isinstance(s, dict) else (None, {})
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
    if not isinstance(budget, dict) or set(budget) - set(BUDGET_KEYS):
        raise PromptSearchError(f"{where}: 'budget' takes {', '.join(BUDGET_KEYS)} (per trial).")
    try:
        Budget(**budget)
    except (PromptSearchError, TypeError) as e:
        raise PromptSearchError(f"{where}: {e}") from None
    resources = {"num_cpus": 1, "num_gpus": 0, **(doc.get("resources") or {})}
    if set(resources) - {"num_cpus", "num_gpus"} or not all(isinstance(v, (int, float)) and v >= 0 for v in resources.values()):
        raise PromptSearchError(f"{where}: 'resources' takes num_cpus and num_gpus (numbers >= 0, per trial).")
    retries = doc.get("retries", 2)
    if not isinstance(retries, int) or retries < 0:
        raise PromptSearchError(f"{where}: 'retries' must be a whole number >= 0.")
    tasks = [str(t) for t in _list(doc, "tasks", where)]
    models = [str(m) for m in _list(doc, "models", where, ["embedded"])]
    trials = [Trial(t, m, s, o, h, seed, tuple(sorted((k, float(v)) for k, v in budget.items())))
              for t, m, (s, o), h, seed in itertools.product(tasks, models, searchers, harnesses, seeds)]
    return Spec(str(doc.get("name") or p.stem), list(dict.fromkeys(trials)), resources, retries, doc.get("db"))
