"""Cutting one list of examples into train/dev/test by fractions, with a seed: used by the
loaders (a file without split labels) and by `split_examples` in the Python API."""

from __future__ import annotations

import random
from typing import Any

from promptsearch.errors import PromptSearchError
from promptsearch.tasks.base import SPLITS, Example

DEFAULT_FRACTIONS = {"train": 0.2, "dev": 0.3, "test": 0.5}


def valid_fractions(fr: Any) -> bool:
    """A mapping of train/dev/test to numbers of at least 0."""
    return (
        isinstance(fr, dict)
        and not set(map(str, fr)) - set(SPLITS)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in fr.values())
    )


def split_by_fraction(items: list[Example], fractions: dict, seed: int, where: str) -> dict[str, list[Example]]:
    if not valid_fractions(fractions):
        raise PromptSearchError(f"{where}: 'splits' must map train/dev/test to fractions, e.g. {DEFAULT_FRACTIONS}.")
    total = sum(float(v) for v in fractions.values())
    if total <= 0:
        raise PromptSearchError(f"{where}: split fractions must add up to more than 0.")
    order = list(items)
    random.Random(seed).shuffle(order)
    out, start = {}, 0
    for i, name in enumerate(SPLITS):
        n = len(order) - start if i == len(SPLITS) - 1 else round(len(order) * float(fractions.get(name, 0)) / total)
        out[name] = order[start : start + n]
        start += n
    return out


def split_examples(
    examples: list[Example], fractions: dict[str, float] | None = None, seed: int = 0
) -> dict[str, list[Example]]:
    """Shuffle with a seed and cut into train/dev/test (default 20/30/50)."""
    return split_by_fraction(list(examples), fractions or DEFAULT_FRACTIONS, seed, "examples")
