"""SQLModel tables. JSON columns hold documented dicts (see README, "Stored runs")."""

from __future__ import annotations

from typing import Optional

from sqlmodel import Field, SQLModel


class CacheEntry(SQLModel, table=True):
    """One model request and its answer. Errors are never stored; neither are API keys."""

    key: str = Field(primary_key=True)  # sha256 of backend identity + full input + decoding params + sample index
    backend: str = Field(index=True)  # e.g. "embedded:SmolLM2-135M-Instruct-Q4_1"
    kind: str  # "loglik" | "gen"
    request: str  # JSON of the rendered request, for inspection
    response: str  # JSON of the result
    n_tokens: int = 0
    created: float = 0.0


class Run(SQLModel, table=True):
    id: str = Field(primary_key=True)
    created: float = Field(index=True)
    task: str = Field(index=True)
    task_hash: str
    searcher: str = Field(index=True)
    model: str = Field(index=True)
    harness: str = "zero-shot"
    seed: int = 0
    best_name: str = ""
    best_text: str = ""
    dev_score: Optional[float] = None
    test_score: Optional[float] = None
    result: str = "{}"  # the run's JSON result document (schema in README, document.py)

    def document(self):
        """The run's document, typed (promptsearch.document.RunDocument)."""
        from promptsearch.document import RunDocument

        return RunDocument.from_json(self.result)


class CandidateRow(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, foreign_key="run.id")
    step: int  # order in which the searcher had it scored
    name: str
    text: str
    candidate: str  # JSON of the candidate (instruction, demos, trigger, soft prompt ref)
    dev_score: Optional[float] = None
    dev_n: int = 0


class TestResult(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, foreign_key="run.id")
    candidate: str  # candidate name: the best one or a baseline
    example_id: str
    score: float
    prediction: str


class SweepTrial(SQLModel, table=True):
    """One trial of a sweep (promptsearch/sweep): its resolved configuration's hash is the key,
    so a rerun of the sweep finds what is finished. Written only by the sweep's own process."""

    key: str = Field(primary_key=True)
    sweep: str = Field(index=True)
    config: str  # JSON of the resolved trial configuration
    status: str = "pending"  # pending | running | done | failed
    run_id: str = ""
    error: str = ""
    attempts: int = 0
    updated: float = 0.0
