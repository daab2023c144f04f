"""Built-in scorers: callables `(prediction, example) -> float`, registered like a user's.

Answers are normalised the way APE's Instruction Induction evaluation does: lower-cased,
" and " dropped, "Sentence 1:"/"Sentence 2:" dropped, cut at the first newline and the
first ".", "-" turned into a space, punctuation stripped.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Callable

from promptsearch.tasks.base import Example

Scorer = Callable[[str, Example], float]
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    text = text.lower().replace(" and ", " ")
    text = text.replace("sentence 1:", "").replace("sentence 2:", "")
    text = text.split("\n")[0].split(".")[0]
    text = text.replace("-", " ").translate(_PUNCT)
    return " ".join(text.split())


def accuracy(prediction: str, example: Example) -> float:
    """The predicted label equals the gold label (labels compared as given, trimmed)."""
    return float(prediction.strip() == example.label.strip())


def exact_match(prediction: str, example: Example) -> float:
    p = normalize(prediction)
    return float(any(p == normalize(a) for a in example.answers))


def contains(prediction: str, example: Example) -> float:
    p = f" {normalize(prediction)} "
    return float(any(normalize(a) and f" {normalize(a)} " in p for a in example.answers))


def f1(prediction: str, example: Example) -> float:
    p = normalize(prediction).split()
    best = 0.0
    for a in example.answers:
        g = normalize(a).split()
        common = sum((Counter(p) & Counter(g)).values())
        if common:
            prec, rec = common / len(p), common / len(g)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best


def exact_set(prediction: str, example: Example) -> float:
    """The set of answer words equals the gold set (order and commas ignored)."""

    def words(t: str) -> set[str]:
        return set(normalize(re.sub(r"[,;]", " ", t)).split())

    gold = set().union(*(words(a) for a in example.answers)) if example.answers else set()
    return float(words(prediction) == gold)


def resolve_scorer(metric: str | Scorer) -> tuple[str, Scorer]:
    if callable(metric):
        return getattr(metric, "__name__", "custom"), metric
    from promptsearch import registry

    return metric, registry.scorers.get(metric)
