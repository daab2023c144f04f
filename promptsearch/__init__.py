"""promptsearch: find the prompt that makes a model do your task best, and prove it on held-out data.

    import promptsearch as ps
    doc = ps.search("sentiment")                      # embedded model, baseline searcher
    res = ps.evaluate(task, "Classify the review.", scorer=my_scorer)

Names are imported on first use, so `import promptsearch` (and the CLI's start-up) stays light.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "search": "promptsearch.api",
    "evaluate": "promptsearch.api",
    "Budget": "promptsearch.budget",
    "Candidate": "promptsearch.candidates",
    "Example": "promptsearch.tasks.base",
    "Task": "promptsearch.tasks.base",
    "split_examples": "promptsearch.tasks.splitting",
    "SoftPrompt": "promptsearch.backends.base",
    "TokenIds": "promptsearch.backends.base",
    "PromptSearchError": "promptsearch.errors",
    "BudgetExhausted": "promptsearch.errors",
    "Searcher": "promptsearch.searchers.base",
    "SearchContext": "promptsearch.searchers.base",
    "Outcome": "promptsearch.searchers.base",
    "option": "promptsearch.searchers.base",
    "Backend": "promptsearch.backends.base",
    "Capabilities": "promptsearch.backends.base",
    "register_backend": "promptsearch.registry",
    "register_scorer": "promptsearch.registry",
    "register_searcher": "promptsearch.registry",
    "register_task": "promptsearch.registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'promptsearch' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
