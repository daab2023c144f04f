"""Scoring prompts: the evaluator, scorers, harnesses and statistics. The exports load on first
use, so that reading `evaluation.stats` (the run document does) does not load the evaluator."""

from __future__ import annotations

__all__ = ["EvalResult", "Evaluator", "normalize", "resolve_scorer"]


def __getattr__(name: str):
    if name in ("EvalResult", "Evaluator"):
        from promptsearch.evaluation import evaluator

        return getattr(evaluator, name)
    if name in ("normalize", "resolve_scorer"):
        from promptsearch.evaluation import scorers

        return getattr(scorers, name)
    raise AttributeError(f"module 'promptsearch.evaluation' has no attribute {name!r}")
