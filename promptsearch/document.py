"""The run document (schema `promptsearch.run/1`): what `run --json` and `show --json` print,
what the store keeps, and what every report, table and export reads.

The runner builds a `RunDocument`; everything that reads a stored run parses it back with
`RunDocument.from_dict` and reads attributes, never keys. The JSON form (`to_dict`) is the one
documented in the README ("Result documents"); runs stored by older versions lack some keys
(`search_best`, `dev_scorings`, `searcher.method`) and parse with those filled in the way the
README says they read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from promptsearch.cost import Usage
from promptsearch.evaluation.stats import PairedDiff
from promptsearch.selection import Confirmation

RUN_SCHEMA = "promptsearch.run/1"


@dataclass
class Score:
    """A mean over `n` examples, with its standard error (None when it has none, n < 2)."""

    mean: float
    stderr: float | None
    n: int

    @classmethod
    def parse(cls, d: dict | None) -> Score | None:
        return None if not d else cls(d["mean"], d.get("stderr"), d.get("n", 0))

    def to_dict(self) -> dict:
        return {"mean": self.mean, "stderr": self.stderr, "n": self.n}


def _paired(d: dict | None) -> PairedDiff | None:
    return None if not d else PairedDiff(d["diff"], d["ci_low"], d["ci_high"], d["p_value"], d["n"])


@dataclass
class Finalist:
    """A prompt compared on the whole dev split and on test: the run's pick (`best`), the
    search's own best (`search_best`) or a baseline. Fields after `test_extras` belong to one
    of the three and are left out of the JSON where they are None."""

    name: str
    prompt: str  # readable form
    candidate: dict  # Candidate.to_dict(): instruction, demos, trigger, soft_prompt fingerprint, ...
    dev: Score | None
    test: Score | None
    test_extras: dict = field(default_factory=dict)
    picked: str | None = None  # best: "search", or "baseline" when a baseline beat the search on dev
    dev_in_search: float | None = None  # search_best: its score as the search saw it
    picked_minus_it: PairedDiff | None = None  # search_best, when a baseline was picked: test, paired
    best_minus_baseline: PairedDiff | None = None  # a baseline: the pick minus it on test, paired

    @property
    def returned_baseline(self) -> bool:
        return self.picked == "baseline"

    @classmethod
    def parse(cls, d: dict) -> Finalist:
        return cls(
            d["name"],
            d["prompt"],
            d.get("candidate") or {},
            Score.parse(d.get("dev")),
            Score.parse(d.get("test")),
            d.get("test_extras") or {},
            d.get("picked"),
            d.get("dev_in_search"),
            _paired(d.get("picked_minus_it")),
            _paired(d.get("best_minus_baseline")),
        )

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "name": self.name,
            "prompt": self.prompt,
            "candidate": self.candidate,
            "dev": self.dev and self.dev.to_dict(),
            "test": self.test and self.test.to_dict(),
            "test_extras": self.test_extras,
        }
        for key in ("picked", "dev_in_search", "picked_minus_it", "best_minus_baseline"):
            v = getattr(self, key)
            if v is not None:
                out[key] = v.to_dict() if isinstance(v, PairedDiff) else v
        return out


@dataclass
class CandidateEntry:
    """One distinct candidate of the search: its mean over every dev example it was scored on."""

    step: int
    name: str
    prompt: str
    candidate: dict
    dev_mean: float
    dev_n: int  # how many dev examples the mean is on: the rung a race let it reach
    outside_search: bool = False  # scored after the search, outside its budget (a soft readout)
    selection: dict | None = None  # its selection score: score (accuracy, gold_prob), mean, n, ci_low, ci_high
    examples: list[str] | None = None  # the ids of the examples it was scored on (dev, and held-out train)

    @classmethod
    def parse(cls, d: dict) -> CandidateEntry:
        return cls(
            d.get("step", 0),
            d["name"],
            d.get("prompt", ""),
            d.get("candidate") or {},
            d["dev_mean"],
            d.get("dev_n", 0),
            bool(d.get("outside_search")),
            d.get("selection"),
            d.get("examples"),
        )

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("step", "name", "prompt", "candidate")}
        if self.outside_search:
            out["outside_search"] = True
        out = {**out, "dev_mean": self.dev_mean, "dev_n": self.dev_n}
        if self.selection is not None:
            out["selection"] = self.selection
        if self.examples is not None:
            out["examples"] = self.examples
        return out

    @property
    def selection_cell(self) -> str:
        """ "0.812 [0.72, 0.90]": the selection score with its interval; "" for older runs."""
        s = self.selection
        if not s or s.get("mean") is None:
            return ""
        ci = f" [{s['ci_low']:.2f}, {s['ci_high']:.2f}]" if s.get("ci_low") is not None else ""
        return f"{s['mean']:.3f}{ci}"


def ranked(cands: list[CandidateEntry]) -> list[CandidateEntry]:
    """Candidates in the order tables show them: by how many dev examples a score is on (the
    rung a race let it reach), then by that score; a mean over 8 examples never outranks one
    over the whole split. Candidates scored after the search, outside it (a soft prompt's
    readout), come after the search's own."""
    return sorted(cands, key=lambda c: (c.outside_search, -c.dev_n, -c.dev_mean))


@dataclass
class DevScoring:
    """One dev scoring, in order (a racing rung is one)."""

    step: int
    name: str
    dev_mean: float
    dev_n: int


@dataclass
class TaskInfo:
    name: str
    hash: str  # content hash of data, template, labels, metric
    source: str | None
    metric: str
    sizes: dict[str, int]  # train, dev, test


@dataclass
class SearcherInfo:
    name: str
    method: str  # the name with the method options it changed: "soft (method=prefix)"
    config: dict


@dataclass
class RunCost:
    search: Usage
    selection: Usage  # the finalists on dev
    test: Usage
    total: Usage
    wall_seconds: float

    @classmethod
    def parse(cls, d: dict) -> RunCost:
        names = {f.name for f in fields(Usage)}
        use = lambda u: Usage(**{k: v for k, v in (u or {}).items() if k in names})  # noqa: E731
        return cls(
            use(d.get("search")),
            use(d.get("selection")),
            use(d.get("test")),
            use(d.get("total")),
            d.get("wall_seconds", 0.0),
        )

    def to_dict(self) -> dict:
        parts = {k: getattr(self, k).to_dict() for k in ("search", "selection", "test", "total")}
        return {**parts, "wall_seconds": self.wall_seconds}


@dataclass
class RunRecord:
    """What reproduces the run."""

    task_template: str
    labels: list[str] | None
    instructions: str | None
    budget: dict
    selection: dict  # select_by, gate, confirm_share (selection.py)
    baseline_shots: int
    harness: dict  # every harness setting, and `demo_ids` of a fixed few-shot set
    searcher_notes: dict
    versions: dict[str, str]
    platform: str
    argv: list[str]

    @classmethod
    def parse(cls, d: dict) -> RunRecord:
        return cls(
            d.get("task_template", ""),
            d.get("labels"),
            d.get("instructions"),
            d.get("budget") or {},
            d.get("selection") or {},
            d.get("baseline_shots", 0),
            d.get("harness") or {},
            d.get("searcher_notes") or {},
            d.get("versions") or {},
            d.get("platform", ""),
            d.get("argv") or [],
        )


@dataclass
class RunDocument:
    run_id: str
    created: str  # start time, ISO 8601 UTC
    task: TaskInfo
    model: dict  # the backend identity that keys the cache (`kind`, `model`, ...)
    searcher: SearcherInfo
    harness: str  # the harness spec, e.g. "zero-shot", "fewshot:k=4+cot"
    seed: int
    best: Finalist  # what the run returns
    search_best: Finalist  # the search's own best
    baselines: list[Finalist]
    candidates: list[CandidateEntry]  # ranked as tables show them
    dev_scorings: list[DevScoring]
    stopped_by: str  # why the search ended early (a budget), or ""
    cost: RunCost
    from_cache: bool  # the run made no model calls
    db: str  # where the run is stored
    record: RunRecord
    confirmation: Confirmation | None = None  # the gate's evidence, when the run had a gate

    @property
    def model_name(self) -> str:
        return self.model.get("model", "?")

    @property
    def label(self) -> str:
        """The searcher as tables name it: its method label."""
        return self.searcher.method

    @classmethod
    def from_json(cls, text: str) -> RunDocument:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, d: dict) -> RunDocument:
        best = Finalist.parse(d["best"])
        s = d.get("searcher") or {}
        t = d["task"]
        return cls(
            d["run_id"],
            d.get("created", ""),
            TaskInfo(t["name"], t["hash"], t.get("source"), t.get("metric", ""), t.get("sizes") or {}),
            d.get("model") or {},
            SearcherInfo(s.get("name", "?"), s.get("method") or _rebuilt_label(s), s.get("config") or {}),
            d.get("harness", "zero-shot"),
            d.get("seed", 0),
            best,
            Finalist.parse(d["search_best"]) if d.get("search_best") else best,
            [Finalist.parse(b) for b in d.get("baselines") or []],
            [CandidateEntry.parse(c) for c in d.get("candidates") or []],
            [DevScoring(x["step"], x["name"], x["dev_mean"], x["dev_n"]) for x in d.get("dev_scorings") or []],
            d.get("stopped_by") or "",
            RunCost.parse(d.get("cost") or {}),
            bool(d.get("from_cache")),
            d.get("db", ""),
            RunRecord.parse(d.get("record") or {}),
            Confirmation.parse(d.get("confirmation")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (README, "Result documents"), keys in their documented order."""
        return {
            "schema": RUN_SCHEMA,
            "run_id": self.run_id,
            "created": self.created,
            "task": self.task.__dict__,
            "model": self.model,
            "searcher": self.searcher.__dict__,
            "harness": self.harness,
            "seed": self.seed,
            "best": self.best.to_dict(),
            "search_best": self.search_best.to_dict(),
            "baselines": [b.to_dict() for b in self.baselines],
            "confirmation": self.confirmation and self.confirmation.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "dev_scorings": [x.__dict__ for x in self.dev_scorings],
            "stopped_by": self.stopped_by,
            "cost": self.cost.to_dict(),
            "from_cache": self.from_cache,
            "db": self.db,
            "record": self.record.__dict__,
        }


def _rebuilt_label(s: dict) -> str:
    """For runs stored before labels were recorded: the label rebuilt from the config and the
    searcher's method options (when the searcher is still known)."""
    from dataclasses import asdict

    from promptsearch import registry
    from promptsearch.records import method_label

    try:
        cls = registry.searchers.get(s.get("name", ""))
        keys, defaults = cls.method_options, asdict(cls.Config())
    except Exception:  # a plug-in that is gone: its bare name
        keys, defaults = (), {}
    return method_label(s.get("name", "?"), s.get("config") or {}, keys, defaults)
