"""Prices in dollars per million tokens, for the cost of a run and dollar budgets.

The built-in table holds OpenAI's list prices (standard tier) for common models as
published on openai.com/api/pricing when this table was written; prices change, so check
them. Add or correct entries in a JSON file named by PROMPTSEARCH_PRICES:

    {"gpt-4o-mini": {"input": 0.15, "output": 0.60}, "my-vllm-model": {"input": 0, "output": 0}}

A model found in neither is "unpriced": its calls are counted and shown as such, never
guessed, and a dollar budget refuses to run with it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from promptsearch.errors import PromptSearchError

BUILTIN: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-3.5-turbo-instruct": (1.50, 2.00),
    "davinci-002": (2.00, 2.00),
    "babbage-002": (0.40, 0.40),
}


@dataclass(frozen=True)
class Price:
    input: float  # dollars per million prompt tokens
    output: float  # dollars per million generated tokens

    def dollars(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


FREE = Price(0.0, 0.0)


def load_prices(path: Path | None) -> dict[str, Price]:
    table = {name: Price(*p) for name, p in BUILTIN.items()}
    if path is None:
        return table
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        for name, entry in data.items():
            table[name] = Price(float(entry["input"]), float(entry["output"]))
    except FileNotFoundError:
        raise PromptSearchError(f"PROMPTSEARCH_PRICES names {path}, which does not exist.") from None
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise PromptSearchError(
            f'{path}: prices must be JSON like {{"model": {{"input": 0.15, "output": 0.6}}}} '
            f"(dollars per million tokens); {type(e).__name__}: {e}."
        ) from None
    return table


def price_for(model: str, path: Path | None = None) -> Price | None:
    """The model's price: an exact name, else the name without a date suffix
    (gpt-4o-mini-2024-07-18 -> gpt-4o-mini); None when unknown."""
    table = load_prices(path)
    if model in table:
        return table[model]
    base = re.sub(r"-\d{4}-\d{2}-\d{2}$", "", model)
    return table.get(base)
