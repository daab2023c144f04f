"""What goes into run records, logs and reports: secrets redacted, JSON that is always valid.

Secrets are URL credentials (`http://user:KEY@host`), key-like options (`api_key=...`,
`token=...`, `Authorization: Bearer ...`), strings shaped like API keys (`sk-...`), and the
configured OPENAI_API_KEY wherever it appears.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MASK = "***"
_URL_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_KEY_OPTION = re.compile(
    r"(\b(?:api[_-]?key|access[_-]?token|auth[_-]?token|token|secret|password|passwd|pwd)\s*[=:]\s*)([^\s,&;'\"]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(\bBearer\s+)([^\s,;'\"]+)", re.IGNORECASE)
_KEY_SHAPED = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{16,}")


def _configured_key() -> str | None:
    from promptsearch.settings import get_settings

    try:
        return get_settings().openai_api_key
    except Exception:  # settings that do not parse are reported elsewhere
        return None


def redact(text: str, key: str | None = None) -> str:
    """`text` with every secret replaced by ***. `key`: the configured API key, if the
    caller has it at hand (else it is read from the settings)."""
    if not text:
        return text
    key = key if key is not None else _configured_key()
    if key and len(key) >= 6:
        text = text.replace(key, MASK)
    text = _URL_USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    text = _KEY_OPTION.sub(lambda m: m.group(1) + MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return _KEY_SHAPED.sub(MASK, text)


def clean(obj: Any, key: str | None = None) -> Any:
    """A JSON-able structure with secrets redacted from every string and non-finite numbers
    (which JSON cannot hold) turned into null."""
    key = key if key is not None else (_configured_key() or "")
    if isinstance(obj, str):
        return redact(obj, key)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {redact(k, key) if isinstance(k, str) else k: clean(v, key) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v, key) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """JSON text that any JSON parser reads (no NaN or Infinity), secrets redacted."""
    return json.dumps(clean(obj), ensure_ascii=False, allow_nan=False, **kwargs)


def per_candidate(history: list) -> list:
    """One CandidateEntry per distinct candidate: its mean over every dev example it was scored
    on (racing scores a candidate in several slices), in the order candidates first appeared;
    with its selection score's mean, n and 95% interval (normal, over those examples)."""
    from promptsearch.document import CandidateEntry
    from promptsearch.evaluation.stats import mean_se

    seen: dict[str, tuple[CandidateEntry, dict, dict]] = {}
    for r in history:
        c = r.candidate
        entry, scores, picks = seen.setdefault(
            c.key(), (CandidateEntry(r.step, c.name, c.describe(), c.to_dict(), 0.0, 0), {}, {})
        )
        if r.extras.get("outside_search"):  # scored after the search, outside its budget (a soft readout)
            entry.outside_search = True
        scores.update(zip(r.example_ids, r.scores))
        picks.update(zip(r.example_ids, r.selection_scores))
        entry.selection = {"score": r.select_by if r.select_by == "gold_prob" and r.gold_probs else "accuracy"}
    for entry, scores, picks in seen.values():
        entry.dev_mean, entry.dev_n = round(sum(scores.values()) / len(scores), 4), len(scores)
        entry.examples = list(scores)
        m, se = mean_se(list(picks.values()))
        half = 1.96 * se if se == se else None  # no interval from one example
        entry.selection.update(
            mean=round(m, 4),
            n=len(picks),
            ci_low=None if half is None else round(m - half, 4),
            ci_high=None if half is None else round(m + half, 4),
        )
    return [entry for entry, _, _ in seen.values()]


def method_label(name: str, config: dict, keys: tuple[str, ...] | list[str], defaults: dict | None = None) -> str:
    """A searcher's name with the options that change its method where they differ from the
    defaults: "soft" (prompt tuning), "soft (method=prefix)"."""
    defaults = defaults or {}
    fmt = lambda v: str(v).lower() if isinstance(v, bool) else str(v)  # noqa: E731
    parts = [f"{k}={fmt(config[k])}" for k in keys if k in config and config[k] != defaults.get(k)]
    return f"{name} ({', '.join(parts)})" if parts else name
