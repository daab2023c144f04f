from promptsearch.evaluation.evaluator import EvalResult, Evaluator
from promptsearch.evaluation.scorers import normalize, resolve_scorer

__all__ = ["EvalResult", "Evaluator", "normalize", "resolve_scorer"]
