"""The searcher contract: `search(task, evaluator, budget, seed) -> SearchResult`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from promptsearch.budget import Budget
from promptsearch.candidates import Candidate
from promptsearch.errors import PromptSearchError
from promptsearch.evaluation.evaluator import EvalResult, Evaluator
from promptsearch.cost import Usage
from promptsearch.tasks.base import Task


@dataclass
class SearchResult:
    best: Candidate
    best_score: float  # dev score of `best`
    history: list[EvalResult]  # every dev scoring, in order
    cost: Usage
    stopped_by: str = ""  # why the search ended early, if it did
    notes: dict[str, Any] = field(default_factory=dict)


class Searcher:
    """Subclasses set `name`, a `Config` dataclass (fields with `metadata={"help": ...}`),
    and implement `search`. A searcher never calls a model to score; it asks the evaluator."""

    name: ClassVar[str] = ""
    needs: ClassVar[str] = "any backend"

    @dataclass
    class Config:
        pass

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    def search(self, task: Task, evaluator: Evaluator, budget: Budget, seed: int) -> SearchResult:
        raise NotImplementedError

    @classmethod
    def config_help(cls) -> list[tuple[str, str, Any, str]]:
        """(name, type, default, help) for each config field: what the CLI shows."""
        out = []
        for f in fields(cls.Config):
            default = f.default if f.default is not f.default_factory else f.default_factory()  # type: ignore[misc]
            out.append((f.name, getattr(f.type, "__name__", str(f.type)), default, f.metadata.get("help", "")))
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
                f"Unknown option '{key}' for searcher '{searcher_cls.name}'.{hint} Options: {', '.join(known) or 'none'}."
            )
        kwargs[key] = _convert(raw, known[key], searcher_cls.name)
    return searcher_cls.Config(**kwargs)


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
            return float(raw)
    except ValueError:
        raise PromptSearchError(f"Option '{f.name}' of searcher '{searcher}' must be {t}, got {raw!r}.") from None
    return raw
