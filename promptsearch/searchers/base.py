"""The searcher contract: `search(task, evaluator, context) -> Outcome`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from promptsearch.candidates import Candidate
from promptsearch.errors import BudgetExhausted, PromptSearchError
from promptsearch.evaluation.evaluator import Evaluator
from promptsearch.tasks.base import Task


@dataclass
class SearchContext:
    """What a search is given besides the task and the evaluator (which owns the budget,
    the history of scorings and their cost)."""

    seed: int = 0  # everything random in the search follows it
    workdir: Path | None = None  # the run's folder, for searchers that checkpoint (None: keep nothing)
    resuming: bool = False  # continue from the last checkpoint in `workdir`
    runs: Any = None  # the stored runs, read-only (`runs.runs(task=..., limit=...)`); None: none to read
    task_hash: str = ""  # the whole task's hash (the searched task may hold only the gate's selection fold of dev)


@dataclass
class Outcome:
    """What a search proposes; the runner decides what the run returns (baselines, test)."""

    best: Candidate
    best_score: float  # dev score of `best` as the search measured it
    stopped_by: str = ""  # why the search ended early (a budget, patience), if it did
    notes: dict[str, Any] = field(default_factory=dict)  # searcher-specific record (README: searcher_notes)


def option(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[str, ...] | None = None,
    above: float | None = None,
) -> Any:
    """A searcher config field: its default, one line of help, and the values it accepts
    (`min`/`max` inclusive, `above` exclusive, or `choices`). The CLI shows them, and every
    config is checked against them before a search starts."""
    return field(default=default, metadata={"help": help, "min": min, "max": max, "above": above, "choices": choices})


def accepted(f) -> str:
    """The values a config field accepts, in words ('' if any)."""
    m = f.metadata
    if m.get("choices"):
        return "one of " + ", ".join(m["choices"])
    parts = []
    if m.get("above") is not None:
        parts.append(f"> {m['above']:g}")
    if m.get("min") is not None:
        parts.append(f">= {m['min']:g}")
    if m.get("max") is not None:
        parts.append(f"<= {m['max']:g}")
    return " and ".join(parts)


def validate_config(searcher_cls: type["Searcher"], config: Any) -> Any:
    """One clear error for the first field outside what it accepts."""
    for f in fields(config):
        m, value = f.metadata, getattr(config, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            continue
        bad = (m.get("choices") and value not in m["choices"]) or (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (
                (m.get("min") is not None and value < m["min"])
                or (m.get("max") is not None and value > m["max"])
                or (m.get("above") is not None and value <= m["above"])
            )
        )
        if bad:
            raise PromptSearchError(
                f"Option '{f.name}' of searcher '{searcher_cls.name}' must be {accepted(f)}, got {value!r}."
            )
    return config


def local_model(backend, subject: str):
    """The LocalModel (backends/local.py) of a local transformers target, which the gradient
    searchers need; any other target gets one line (`subject`: "AutoPrompt needs", say)."""
    if not backend.capabilities.local_model:
        raise PromptSearchError(
            f"{subject} gradients from a local transformers model (embedded or hf:...); '{backend.model_id}' gives "
            "none. Searchers that work with it: baseline, demos, ape, opro, grips, mipro, gepa, and rl with "
            "-o policy=PATH."
        )
    return backend.local_model()


class until_budget:
    """`with until_budget() as stop:` ends the block at a budget (BudgetExhausted) and keeps
    why in `stop.reason`; the search goes on with its best so far. Other errors pass."""

    def __init__(self):
        self.reason = ""

    def __enter__(self) -> "until_budget":
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if kind is not None and issubclass(kind, BudgetExhausted):
            self.reason = str(exc)
            return True
        return False


class Searcher:
    """Subclasses set `name`, a `Config` dataclass (fields with `metadata={"help": ...}`),
    and implement `search`. A searcher never calls a model to score; it asks the evaluator."""

    name: ClassVar[str] = ""
    needs: ClassVar[str] = "any backend"  # in words, for `promptsearch searchers`
    # Capabilities (backends/base.py) the target must have; `check` refuses others before
    # the search starts, with one line
    requires: ClassVar[tuple[str, ...]] = ()
    checkpoints: ClassVar[bool] = False  # saves its state under `workdir` and can resume from it
    trains_on_train: ClassVar[bool] = False  # fits weights or tokens to train (select_on=train+dev: dev only)
    # options that make it a different method, not a different budget or schedule (soft's
    # `method`, say): leaderboard rows and `runs` are keyed and labelled by them
    method_options: ClassVar[tuple[str, ...]] = ()

    @dataclass
    class Config:
        pass

    def __init__(self, config: Any = None):
        self.config = validate_config(type(self), config if config is not None else self.Config())

    def check(self, backend) -> None:
        """Refuse, in one line, a target this searcher cannot work with (and a missing
        optional package), before the run writes anything. The runner calls it."""
        missing = [name for name in self.requires if not getattr(backend.capabilities, name)]
        if missing:
            if "local_model" in missing:
                local_model(backend, f"The {self.name} searcher needs")
            raise PromptSearchError(
                f"The {self.name} searcher needs a target that can {', '.join(missing)}; '{backend.model_id}' cannot."
            )

    def search(self, task: Task, evaluator: Evaluator, context: SearchContext) -> Outcome:
        """Propose candidates, score them through `evaluator` (never a model directly), and
        return the best; at a budget (BudgetExhausted), stop with the best so far."""
        raise NotImplementedError

    def method(self) -> str:
        """The searcher with the method options it changed: "soft (method=prefix)"."""
        from promptsearch.records import method_label

        return method_label(self.name, asdict(self.config), self.method_options, asdict(self.Config()))

    @classmethod
    def config_help(cls) -> list[tuple[str, str, Any, str]]:
        """(name, type, default, help) for each config field: what the CLI shows; the help
        ends with the values the field accepts."""
        out = []
        for f in fields(cls.Config):
            default = f.default if f.default is not f.default_factory else f.default_factory()  # type: ignore[misc]
            rule = accepted(f)
            help_ = f.metadata.get("help", "") + (f" ({rule})" if rule else "")
            out.append((f.name, getattr(f.type, "__name__", str(f.type)), default, help_))
        return out


def build_config(searcher_cls: type[Searcher], overrides: dict[str, str]) -> Any:
    """Apply `-o key=value` overrides, converting to each field's type."""
    known = {f.name: f for f in fields(searcher_cls.Config)}
    kwargs: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean: {close[0]}?" if close else ""
            raise PromptSearchError(
                f"Unknown option '{key}' for searcher '{searcher_cls.name}'.{hint} "
                f"Options: {', '.join(known) or 'none'}."
            )
        kwargs[key] = _convert(raw, known[key], searcher_cls.name)
    return validate_config(searcher_cls, searcher_cls.Config(**kwargs))


def _convert(raw: str, f, searcher: str) -> Any:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if t.startswith("bool"):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if t.startswith("int"):
            return int(raw)
        if t.startswith("float"):
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return value
    except ValueError:
        raise PromptSearchError(f"Option '{f.name}' of searcher '{searcher}' must be {t}, got {raw!r}.") from None
    return raw
