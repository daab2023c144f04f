"""How a run picks what it returns: the per-example selection score, the confirmation fold
and the gate against the baselines (README, "Selection you can trust").

- `select_by`: `accuracy` is the task's own metric; `gold_prob` is, per example, the
  probability of the gold label normalised over the labels (after calibration when the
  harness calibrates). It needs label scores (log-likelihoods or first-token
  log-probabilities); it is finer than accuracy (an example moves it by how sure the model
  was, not by 0 or 1), so fewer examples tell two prompts apart. `auto` is gold_prob where
  the run scores labels and accuracy where answers are generated. Reports always give the
  task's metric.
- `gate`: off (None, the default), or a level such as 0.9. With a gate the dev split is cut, seeded and
  stratified by label, into a selection fold (what the search and the baseline choice see)
  and a confirmation fold (what neither sees). The search's best replaces the best baseline
  (best on the selection fold) only when the lower bound of the paired bootstrap interval
  (two-sided, at `gate`) of their difference on the confirmation fold, in the selection
  score, is above zero; otherwise the run returns that baseline and says by how much, with
  what interval, the search fell short.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

from promptsearch.errors import PromptSearchError
from promptsearch.evaluation.stats import PairedDiff, paired_bootstrap

SELECT_BY = ("auto", "accuracy", "gold_prob")
SELECT_ON = ("dev", "train+dev")
OFF = ("off", "none", "no")
MIN_GATE_DEV = 4  # below this a confirmation fold would hold one or two examples: the run picks on the whole dev


def level(value: float | str | None, what: str = "level") -> float | None:
    """A confidence level as the CLI, the API and sweep specs give it: a number, or off/none/None
    (YAML reads a bare `off` as false)."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in OFF):
        return None
    if value is True:
        raise PromptSearchError(f"The {what} is 'true'; give a level such as 0.9, or off.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PromptSearchError(f"The {what} '{value}' is not a number; give a level such as 0.9, or off.") from None


@dataclass(frozen=True)
class Selection:
    """How a run picks its answer. The defaults, the pick on the whole dev split by accuracy,
    stay from the measurements (benchmarks/selection.py, README "How a run picks its answer")."""

    select_by: str = "accuracy"  # or gold_prob, or auto: gold_prob where labels are scored (resolved by the runner)
    gate: float | None = None  # the interval's level; None: no confirmation fold, pick on the whole dev split
    confirm_share: float = 0.5  # the share of dev held out for confirmation when the gate is on
    race_level: float | None = None  # racing keeps candidates within noise of the leader; None: by rank alone
    select_on: str = "dev"  # "train+dev": the search also selects on train examples held out from it
    train_share: float = 0.5  # the share of train held out to select on, under select_on=train+dev

    def __post_init__(self):
        object.__setattr__(self, "gate", level(self.gate, "gate level"))
        object.__setattr__(self, "race_level", level(self.race_level, "racing level"))
        if self.select_by not in SELECT_BY:
            raise PromptSearchError(f"Unknown selection score '{self.select_by}'; use one of: {', '.join(SELECT_BY)}.")
        if self.gate is not None and not 0.5 <= self.gate < 1:
            raise PromptSearchError(
                f"The gate level {self.gate} is not in [0.5, 1); give a confidence level such as 0.9, or no gate."
            )
        if self.race_level is not None and not 0.5 <= self.race_level < 1:
            raise PromptSearchError(
                f"The racing level {self.race_level} is not in [0.5, 1); give a confidence level such as 0.8."
            )
        if self.select_on not in SELECT_ON:
            raise PromptSearchError(f"Unknown select_on '{self.select_on}'; use one of: {', '.join(SELECT_ON)}.")
        if not 0 < self.train_share < 1:
            raise PromptSearchError(f"The held-out train share {self.train_share} is not between 0 and 1.")
        if not 0 < self.confirm_share < 1:
            raise PromptSearchError(f"The confirmation share {self.confirm_share} is not between 0 and 1.")

    @classmethod
    def of(cls, value: Selection | dict | None) -> Selection:
        if isinstance(value, Selection):
            return value
        return cls(**(value or {}))

    @classmethod
    def whole_dev(cls) -> Selection:
        """Accuracy on the whole dev split, racing by rank alone: the default, named for code
        (benchmarks) that must keep it whatever the defaults become."""
        return cls(select_by="accuracy", gate=None, race_level=None)

    @classmethod
    def gated(cls) -> Selection:
        """The gated pick benchmarks/selection.py measures as `after`: gold-label probability
        where labels are scored, a gate at 0.9, racing at 0.8."""
        return cls(select_by="auto", gate=0.9, race_level=0.8)

    def resolved(self, scores_labels: bool) -> Selection:
        """`auto` made concrete: gold_prob where the run scores labels, else accuracy."""
        if self.select_by != "auto":
            return self
        return replace(self, select_by="gold_prob" if scores_labels else "accuracy")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def score_name(self) -> str:
        return "gold-label probability" if self.select_by == "gold_prob" else "accuracy"


def folds(examples: Sequence, seed: int, share: float, what: str = "dev") -> tuple[list, list]:
    """(selection, confirmation): each label's examples shuffled with `seed` and cut at
    `share`, so both folds keep the label mix; each fold gets at least one example."""
    by_label: dict[str, list] = {}
    for e in examples:
        by_label.setdefault(e.label, []).append(e)
    rng = random.Random(f"confirm:{seed}")
    chosen: set[str] = set()
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda e: e.id)
        rng.shuffle(group)
        chosen.update(e.id for e in group[: round(len(group) * share)])
    if len(examples) < 2:
        raise PromptSearchError(f"Cutting {what} in two needs at least 2 examples; the task has {len(examples)}.")
    if not chosen:
        chosen.add(examples[-1].id)
    if len(chosen) == len(examples):
        chosen.discard(examples[0].id)
    return [e for e in examples if e.id not in chosen], [e for e in examples if e.id in chosen]


@dataclass
class Plan:
    """What the search sees and what the finalists are compared on."""

    searched: Any  # the task the search gets: its dev is what it selects on
    finals: Any  # the task the finalists are scored on (the whole dev; train as the search had it)
    split: tuple[list, list] | None  # (selection, confirmation) folds of dev, under a gate
    held_train: list  # train examples held out of the search's train and added to what it selects on
    select_on: str  # what was used: "dev", or "train+dev"
    selection: Selection

    def record(self) -> dict:
        """The run record's `selection`: the settings, what was used, the train ids held out."""
        return {**self.selection.to_dict(), "used": self.select_on, "held_train": [e.id for e in self.held_train]}


def plan(task, selection: Selection, seed: int, trains_on_train: bool, say) -> Plan:
    """The search's task under `selection`: with a gate, dev's confirmation fold is taken out;
    with select_on=train+dev, a seeded, stratified share of train is taken out of train (so no
    demo, proposer or training step sees it) and added to what the search selects on, shuffled
    in with dev. A searcher that trains on train (soft prompts, AutoPrompt, RL) selects on dev."""
    if selection.gate is not None and len(task.dev) < MIN_GATE_DEV:
        say(f"No gate: dev has {len(task.dev)} examples, fewer than the {MIN_GATE_DEV} it needs to hold half out")
        selection = replace(selection, gate=None)
    split = folds(task.dev, seed, selection.confirm_share) if selection.gate is not None else None
    dev = list(split[0]) if split else list(task.dev)
    if selection.select_on == "dev":
        return Plan(replace(task, dev=dev) if split else task, task, split, [], "dev", selection)
    if trains_on_train:
        say("select_on=train+dev: this searcher trains on train, so it selects on dev only")
        return Plan(replace(task, dev=dev) if split else task, task, split, [], "dev", selection)
    kept, held = folds(task.train, seed, selection.train_share, "train")
    mixed = dev + held
    random.Random(f"select-on:{seed}").shuffle(mixed)
    say(f"Selecting on {len(dev)} dev and {len(held)} train examples held out of the search's train")
    return Plan(replace(task, train=kept, dev=mixed), replace(task, train=kept), split, held, "train+dev", selection)


@dataclass
class Confirmation:
    """The gate's evidence: the search's best against the best baseline on the confirmation fold."""

    score: str  # the selection score compared: accuracy or gold_prob
    level: float
    seed: int
    baseline: str  # the best baseline on the selection fold
    select_ids: list[str]
    confirm_ids: list[str]
    diff: PairedDiff  # search's best minus that baseline, on confirm_ids
    passed: bool
    search_is_baseline: bool = False  # the search returned one of the baselines itself
    baseline_select_mean: float = 0.0
    search_select_mean: float = 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["diff"] = self.diff.to_dict()
        out["baseline_select_mean"] = round(self.baseline_select_mean, 4)
        out["search_select_mean"] = round(self.search_select_mean, 4)
        return out

    @classmethod
    def parse(cls, d: dict | None) -> Confirmation | None:
        if not d:
            return None
        diff = d["diff"]
        return cls(
            d["score"],
            d["level"],
            d["seed"],
            d["baseline"],
            list(d.get("select_ids") or []),
            list(d.get("confirm_ids") or []),
            PairedDiff(diff["diff"], diff["ci_low"], diff["ci_high"], diff["p_value"], diff["n"]),
            bool(d["passed"]),
            bool(d.get("search_is_baseline")),
            d.get("baseline_select_mean", 0.0),
            d.get("search_select_mean", 0.0),
        )

    def line(self, search_name: str) -> str:
        """One line: what the gate decided, by how much, with what interval."""
        d, pct = self.diff, f"{self.level:.0%}"
        where = f"on {d.n} held-out dev examples"
        if self.search_is_baseline:
            return f"The search returned a baseline itself ({search_name}); nothing to confirm."
        gap = f"{d.diff:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}] in {self.score} ({pct} paired interval)"
        if self.passed:
            return f"Confirmed {where}: {search_name} beats {self.baseline} by {gap}."
        return (
            f"Not confirmed {where}: {search_name} against {self.baseline} is {gap}, whose lower bound is not "
            f"above zero, so the run returns {self.baseline}."
        )


def confirm(
    search_best,
    baselines: list,
    devs: dict,
    select_ids: list[str],
    confirm_ids: list[str],
    selection: Selection,
    seed: int,
) -> Confirmation:
    """The gate: `devs` holds every finalist's scoring on the whole dev split (candidate key ->
    EvalResult, scored with the run's `select_by`); the baseline is chosen on the selection
    fold, the comparison made on the confirmation fold."""
    assert selection.gate is not None

    def on(cand, ids: list[str]) -> list[float]:
        r = devs[cand.key()]
        by_id = dict(zip(r.example_ids, r.selection_scores))
        return [by_id[i] for i in ids]

    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    best_base = max(baselines, key=lambda b: mean(on(b, select_ids)))  # first wins ties: the simplest prompt
    same = any(b.key() == search_best.key() for b in baselines)
    mine, theirs = on(search_best, confirm_ids), on(best_base, confirm_ids)
    diff = paired_bootstrap(mine, theirs, seed=seed, level=selection.gate)
    diff = PairedDiff(**diff.to_dict())  # rounded as records keep it
    return Confirmation(
        selection.select_by,
        selection.gate,
        seed,
        best_base.name,
        list(select_ids),
        list(confirm_ids),
        diff,
        passed=not same and diff.ci_low > 0,
        search_is_baseline=same,
        baseline_select_mean=mean(on(best_base, select_ids)),
        search_select_mean=mean(on(search_best, select_ids)),
    )
