"""Built-in tasks written for this project."""

from __future__ import annotations

import json
from importlib import resources

from promptsearch.tasks.base import Example, Task


def sentiment() -> Task:
    """228 original review sentences (negation, sarcasm, mixed and understated cases)."""
    path = resources.files("promptsearch.tasks") / "data" / "sentiment.jsonl"
    splits: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        splits[row["split"]].append(
            Example(row["id"], row["text"], row["label"], {"phenomenon": row["phenomenon"]})
        )
    return Task(
        name="sentiment",
        **splits,
        template="Review: {input}\nSentiment:",
        labels={"negative": "negative", "positive": "positive"},
        metric="accuracy",
        instructions=[
            "Read the review and say whether the writer's overall opinion is positive or negative.",
        ],
        description="Binary sentiment of short reviews, with negation, sarcasm and mixed opinions.",
        source="builtin:sentiment",
    ).validate()
