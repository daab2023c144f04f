"""Means, standard errors and paired bootstrap intervals on per-example scores."""

from __future__ import annotations

from dataclasses import dataclass


def logsumexp(xs: list[float]) -> float:
    """log(sum(exp(x))) without overflow."""
    import math

    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs)) if len(xs) > 1 else xs[0]


def mean_se(scores: list[float]) -> tuple[float, float]:
    import numpy as np

    x = np.asarray(scores, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan")
    se = float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return float(x.mean()), se


@dataclass
class PairedDiff:
    diff: float  # mean(a) - mean(b)
    ci_low: float
    ci_high: float
    p_value: float  # two-sided bootstrap p-value for diff == 0
    n: int

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def paired_bootstrap(
    a: list[float], b: list[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> PairedDiff:
    """Resample examples (pairs stay together) to get an interval for mean(a) - mean(b)."""
    import numpy as np

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or len(x) == 0:
        raise ValueError("paired_bootstrap needs two equal-length, non-empty score lists")
    d = x - y
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    boots = d[idx].mean(axis=1)  # [n_boot]
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    centered = boots - d.mean()
    p = float(np.mean(np.abs(centered) >= abs(d.mean()))) if d.any() else 1.0
    return PairedDiff(float(d.mean()), float(lo), float(hi), p, len(d))
