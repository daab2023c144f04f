"""Task and Example: labeled data, a template, and a metric."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from promptsearch.errors import PromptSearchError

SPLITS = ("train", "dev", "test")


def label_words(word) -> tuple[str, ...]:
    """A label's verbalizer as a tuple: one word, or several (scored as "any of them")."""
    return (word,) if isinstance(word, str) else tuple(word)


@dataclass(frozen=True)
class Example:
    """One labeled item. `target` is the label (classification) or the gold answers."""

    id: str
    input: str
    target: str | tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def answers(self) -> tuple[str, ...]:
        return (self.target,) if isinstance(self.target, str) else tuple(self.target)

    @property
    def label(self) -> str:
        return self.answers[0]


@dataclass
class Task:
    """A task: splits, a template with an `{input}` slot, and how answers are scored.

    `labels` maps each label to the word the model should say for it (its verbalizer), or
    to a list of words: the label then scores the probability of saying any of them, and
    demos show the first. With labels set, the evaluator scores by log-likelihood of those
    words, otherwise it generates an answer and applies `metric`.
    """

    name: str
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    template: str = "Input: {input}\nOutput:"
    labels: dict[str, str | list[str]] | None = None
    metric: str = "exact_match"
    instructions: list[str] = field(default_factory=list)
    description: str = ""
    source: str = ""

    @property
    def is_classification(self) -> bool:
        return bool(self.labels)

    def split(self, name: str) -> list[Example]:
        if name not in SPLITS:
            raise PromptSearchError(f"Unknown split '{name}'. Use one of: {', '.join(SPLITS)}.")
        return getattr(self, name)

    def validate(self) -> "Task":
        where = self.source or self.name
        if "{input}" not in self.template:
            raise PromptSearchError(
                f"Task '{self.name}': the template {self.template!r} has no {{input}} slot; add one."
            )
        for split in ("dev", "test"):
            if not self.split(split):
                raise PromptSearchError(
                    f"Task '{self.name}' ({where}): the {split} split is empty; "
                    "give it examples or set split fractions in the task spec."
                )
        if self.labels and len(self.labels) < 2:
            raise PromptSearchError(
                f"Task '{self.name}' ({where}): every example has the label {next(iter(self.labels))!r}, so there is "
                "nothing to classify; give examples of at least two labels (or open answers without a label set)."
            )
        if self.labels:
            for lab, word in self.labels.items():
                ws = label_words(word)
                if not ws or not all(isinstance(w, str) and w.strip() for w in ws):
                    raise PromptSearchError(
                        f"Task '{self.name}' ({where}): label {lab!r} needs a word (or a list of words) "
                        f"for the model to say, got {word!r}."
                    )
            for split in SPLITS:
                for ex in self.split(split):
                    if ex.label not in self.labels:
                        raise PromptSearchError(
                            f"Task '{self.name}' ({where}), example {ex.id}: label {ex.label!r} is not "
                            f"in the label set {sorted(self.labels)}; fix the row or add the label to the spec."
                        )
        seen: set[str] = set()
        for split in SPLITS:
            for ex in self.split(split):
                if ex.id in seen:
                    raise PromptSearchError(f"Task '{self.name}' ({where}): duplicate example id {ex.id!r}.")
                seen.add(ex.id)
        return self

    def to_dict(self) -> dict[str, Any]:
        def rows(xs: list[Example]) -> list[list[Any]]:
            return [[e.id, e.input, list(e.answers)] for e in xs]

        return {
            "name": self.name,
            "template": self.template,
            "labels": self.labels,
            "metric": self.metric,
            "instructions": self.instructions,
            "train": rows(self.train),
            "dev": rows(self.dev),
            "test": rows(self.test),
        }

    def hash(self) -> str:
        """Content hash: the same data, template, labels and metric give the same hash."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def summary(self) -> str:
        kind = f"{len(self.labels)} labels" if self.labels else f"open answers ({self.metric})"
        return f"{self.name}: {len(self.train)}/{len(self.dev)}/{len(self.test)} train/dev/test, {kind}"
