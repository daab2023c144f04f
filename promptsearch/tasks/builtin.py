"""Built-in tasks written for this project."""

from __future__ import annotations

import json
from importlib import resources

from promptsearch.tasks.base import Example, Task


def _splits(name: str) -> dict[str, list[Example]]:
    path = resources.files("promptsearch.tasks") / "data" / f"{name}.jsonl"
    splits: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        splits[row["split"]].append(Example(row["id"], row["text"], row["label"], {"phenomenon": row["phenomenon"]}))
    return splits


def sentiment() -> Task:
    """228 original review sentences (negation, sarcasm, mixed and understated cases)."""
    splits = _splits("sentiment")
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


def complaints() -> Task:
    """113 original short messages to companies, complaint or not: plain complaints, sarcasm,
    polite and understated complaints, complaints phrased as questions, and non-complaints
    that ask, request or praise (after RAFT's twitter_complaints, written for this project)."""
    return Task(
        name="complaints",
        **_splits("complaints"),
        template="Message: {input}\nLabel:",
        labels={"complaint": "complaint", "no complaint": "no complaint"},
        metric="accuracy",
        instructions=["Say whether the message to the company is a complaint or not."],
        description="Messages addressed to companies: complaint or no complaint (sarcasm, politeness, questions).",
        source="builtin:complaints",
    ).validate()
