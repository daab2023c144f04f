"""The searcher contract: `search(task, evaluator, budget, seed) -> SearchResult`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from promptsearch.budget import Budget
from promptsearch.candidates import Candidate
from promptsearch.cost import Usage
from promptsearch.errors import PromptSearchError
from promptsearch.evaluation.evaluator import EvalResult, Evaluator
from promptsearch.tasks.base import Task


@dataclass
class SearchResult:
    best: Candidate
    best_score: float  # dev score of `best`
    history: list[EvalResult]  # every dev scoring, in order
    cost: Usage
    stopped_by: str = ""  # why the search ended early, if it did
    notes: dict[str, Any] = field(default_factory=dict)


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
    """(model, tokenizer) of a local transformers target, which the gradient searchers need;
    any other target gets one line (`subject`: "AutoPrompt needs", say)."""
    try:
        return backend.model, backend.tokenizer
    except AttributeError:
        raise PromptSearchError(
            f"{subject} gradients from a local transformers model (embedded or hf:...); '{backend.model_id}' gives "
            "none. Searchers that work with it: baseline, ape, and rl with -o policy=PATH."
        ) from None


class Searcher:
    """Subclasses set `name`, a `Config` dataclass (fields with `metadata={"help": ...}`),
    and implement `search`. A searcher never calls a model to score; it asks the evaluator."""

    name: ClassVar[str] = ""
    needs: ClassVar[str] = "any backend"
    checkpoints: ClassVar[bool] = False  # saves its state under `workdir` and can resume from it
    # options that make it a different method, not a different budget or schedule (soft's
    # `method`, say): leaderboard rows and `runs` are keyed and labelled by them
    method_options: ClassVar[tuple[str, ...]] = ()

    @dataclass
    class Config:
        pass

    def __init__(self, config: Any = None):
        self.config = validate_config(type(self), config if config is not None else self.Config())
        self.workdir = None  # set by the runner for searchers that checkpoint: the run's folder
        self.resuming = False  # continue from the last checkpoint in `workdir`

    def search(self, task: Task, evaluator: Evaluator, budget: Budget, seed: int) -> SearchResult:
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
