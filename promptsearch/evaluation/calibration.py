"""Calibration: remove a prompt's label bias from label log-likelihood scores.

A small model under a given prompt often prefers one label whatever the input. Each mode
estimates that preference for the candidate being scored (same instruction, demos, trigger,
soft prompt and label words) from inputs only, never from labels, and divides it out:

    contextual  content-free inputs ("N/A", "", "[MASK]")                  Zhao et al. 2021
    domain      random strings of in-domain words at the inputs' length    Fei et al. 2023
    batch       real unlabeled inputs                                      Zhou et al. 2023

contextual and domain average the label-set probabilities of their inputs, p̄; batch
averages their log-probabilities. Each example's label-set log-probabilities then have the
bias subtracted and are renormalised: log q(y|x) = log p(y|x) − log p̄(y) − log Z. With one
bias per prompt this is Zhao et al.'s diagonal correction; a prompt without bias (p̄
uniform) is left unchanged.

The estimation inputs come from train+dev by default (inductive: the same estimate for dev
and test scoring); `transductive` draws them from the split being scored instead (for batch:
the scored inputs themselves, at no extra model call).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from promptsearch.tasks.base import Example, Task

MODES = ("contextual", "domain", "batch")
DEFAULT_MODE = "batch"  # the best mean over the few-shot table's rows (benchmarks/README.md, "Calibration")
CONTENT_FREE = ("N/A", "", "[MASK]")
DEFAULT_N = {"contextual": len(CONTENT_FREE), "domain": 20, "batch": 32}


@dataclass(frozen=True)
class Calibration:
    mode: str = DEFAULT_MODE
    n: int = 0  # estimation inputs; 0: the mode's default (DEFAULT_N)
    transductive: bool = False
    seed: int = 0

    @property
    def size(self) -> int:
        return self.n or DEFAULT_N[self.mode]

    def inputs(self, task: Task, scored: list[Example], exclude: set[str] = frozenset()) -> list[Example]:
        """The estimation inputs for one scoring, as examples with a placeholder target (only
        their text is used). Deterministic: the same task and settings give the same inputs,
        so their requests come from the cache the second time. Empty for transductive batch
        calibration, which reuses the scored inputs themselves."""
        rng = random.Random(f"calibrate:{self.mode}:{self.seed}")
        pool = [e for e in (scored if self.transductive else task.train + task.dev) if e.id not in exclude]
        target = (next(iter(task.labels)),) if task.labels else ("",)
        if self.mode == "contextual":
            texts = [CONTENT_FREE[i % len(CONTENT_FREE)] for i in range(self.size)]
        elif self.mode == "domain":
            texts = domain_strings(pool, self.size, rng)
        elif self.transductive:
            return []
        else:  # real inputs keep their ids, so an example is never its own demo (kNN, a fixed few-shot set)
            return [Example(e.id, e.input, target) for e in rng.sample(pool, min(self.size, len(pool)))]
        return [Example(f"calibrate:{self.mode}:{i}", t, target) for i, t in enumerate(texts)]

    def to_dict(self) -> dict:
        return {"mode": self.mode, "n": self.size, "transductive": self.transductive, "seed": self.seed}


def domain_strings(pool: list[Example], n: int, rng: random.Random) -> list[str]:
    """n strings of words drawn at random from the pool's inputs, each as long (in words) as
    the pool's inputs are on average (Fei et al.'s random in-domain text)."""
    words = [w for e in pool for w in e.input.split()]
    if not words:
        return [""] * n
    length = max(1, round(len(words) / len(pool)))
    return [" ".join(rng.choice(words) for _ in range(length)) for _ in range(n)]


def normalised(lp: dict[str, float]) -> dict[str, float]:
    """Label log-probabilities renormalised over the label set (a log-softmax)."""
    m = max(lp.values())
    z = m + math.log(sum(math.exp(v - m) for v in lp.values()))
    return {lab: v - z for lab, v in lp.items()}


def estimate(rows: list[dict[str, float]], mode: str) -> dict[str, float]:
    """The label bias, as a log-probability per label, from the estimation inputs' label
    log-probabilities: the log of the mean probability (contextual, domain) or the mean
    log-probability (batch)."""
    rows = [normalised(r) for r in rows]
    labels = list(rows[0])
    if mode == "batch":
        return {lab: sum(r[lab] for r in rows) / len(rows) for lab in labels}
    return {lab: math.log(max(sum(math.exp(r[lab]) for r in rows) / len(rows), 1e-300)) for lab in labels}


def apply(lp: dict[str, float], bias: dict[str, float]) -> dict[str, float]:
    """One example's calibrated label log-probabilities (normalised over the label set)."""
    return normalised({lab: v - bias[lab] for lab, v in normalised(lp).items()})
