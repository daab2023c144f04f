"""One small registry for the four plug-in kinds.

Built-ins register through the same path a third party uses. Third-party packages add
entries through the entry-point groups below, e.g. in their pyproject.toml:

    [project.entry-points."promptsearch.searchers"]
    mysearch = "mypkg.search:MySearcher"

Entries are "module:attr" strings or objects; strings are imported only when used, so
listing names never imports torch.
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any

from promptsearch.errors import PromptSearchError

GROUPS = {
    "searcher": "promptsearch.searchers",  # name -> Searcher class (with a `Config` dataclass)
    "scorer": "promptsearch.scorers",  # name -> callable (prediction, example) -> float
    "task": "promptsearch.tasks",  # name -> callable () -> Task
    "backend": "promptsearch.backends",  # name -> callable (spec: str, settings) -> Backend
}


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._plugins_loaded = False

    def register(self, name: str, obj: Any = None):
        """`register(name, obj)`, or as a decorator: `@register(name)`."""
        if obj is None:
            return lambda o: self.register(name, o) or o
        self._entries[name] = obj
        return obj

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=GROUPS[self.kind]):
            self._entries.setdefault(ep.name, ep.value)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._entries

    def get(self, name: str) -> Any:
        self._load_plugins()
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise PromptSearchError(f"Unknown {self.kind} '{name}'.{hint} Available: {', '.join(self.names())}.")
        obj = self._entries[name]
        if isinstance(obj, str):
            module, _, attr = obj.partition(":")
            obj = getattr(importlib.import_module(module), attr)
            self._entries[name] = obj
        return obj


searchers = Registry("searcher")
scorers = Registry("scorer")
tasks = Registry("task")
backends = Registry("backend")

register_searcher = searchers.register
register_scorer = scorers.register
register_task = tasks.register
register_backend = backends.register

# What a bare `promptsearch run` searches with: the best mean test score of a small measured
# comparison on the embedded model (benchmarks/default_searcher.py; README, "Quickstart").
DEFAULT_SEARCHER = "demos"

# Built-ins, registered lazily by import path.
register_searcher("baseline", "promptsearch.searchers.baseline:BaselineSearcher")
register_searcher("ape", "promptsearch.searchers.ape:APESearcher")
register_searcher("autoprompt", "promptsearch.searchers.autoprompt:AutoPromptSearcher")
register_searcher("soft", "promptsearch.searchers.soft:SoftPromptSearcher")
register_searcher("rl", "promptsearch.searchers.rl:RLSearcher")
register_searcher("demos", "promptsearch.searchers.demos:DemoSearcher")
register_searcher("opro", "promptsearch.searchers.opro:OPROSearcher")
register_searcher("grips", "promptsearch.searchers.grips:GrIPSSearcher")
register_searcher("mipro", "promptsearch.searchers.mipro:MIPROSearcher")
register_searcher("gepa", "promptsearch.searchers.gepa:GEPASearcher")
for _name in ("accuracy", "exact_match", "contains", "f1", "exact_set"):
    register_scorer(_name, f"promptsearch.evaluation.scorers:{_name}")
register_task("sentiment", "promptsearch.tasks.builtin:sentiment")
register_task("complaints", "promptsearch.tasks.builtin:complaints")
register_backend("embedded", "promptsearch.backends.embedded:load_embedded")
register_backend("hf", "promptsearch.backends.hf:load_hf")
register_backend("openai", "promptsearch.backends.openai_api:load_openai")
