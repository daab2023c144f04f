"""Harnesses: how a prompt is run. One composable spec, e.g.

    zero-shot                      the default
    fewshot:k=4                    4 train demos before each query (balanced, seeded)
    cot                            a chain-of-thought trigger, then answer extraction
    sc:n=5,temperature=0.7         self-consistency: n samples, majority vote
    fewshot:k=4+cot+sc:n=5         all three
    fewshot:k=4+calibrate          label-bias correction of the scores (see calibration.py)
    calibrate:mode=batch,n=64      another mode, more estimation inputs
    options:show=false             never list the label words in a generated-answer prompt

Where a label task's answer has to be generated because the backend cannot score label
log-likelihoods (chat APIs), the prompt lists the labels after the instruction ("Answer with
one of: positive, negative."), as a chat user would; `options:show=true|false` forces that on
or off for every harness that generates (cot, sc) on any backend.

Options: fewshot:k,balanced,per_example,seed · cot:trigger,answer_call,max_tokens ·
sc:n,temperature,top_p · calibrate:mode,n,transductive · options:show. `cot:trigger=ape` picks APE's
trigger phrase.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field

from promptsearch.errors import PromptSearchError
from promptsearch.evaluation.calibration import DEFAULT_MODE, MODES, Calibration
from promptsearch.tasks.base import Example, Task, label_words

TRIGGERS = {
    "kojima": "Let's think step by step.",
    "ape": "Let's work this out in a step by step way to be sure we have the right answer.",
}
ANSWER_PROMPT = "\nTherefore, the answer is"


@dataclass(frozen=True)
class Harness:
    fewshot_k: int = 0
    balanced: bool = True
    per_example: bool = False  # draw demos per example instead of one set for all
    demo_seed: int = 0
    cot: bool = False
    trigger: str = TRIGGERS["kojima"]
    answer_call: bool = False  # a second "Therefore, the answer is" call when extraction fails
    cot_tokens: int = 128
    sc_n: int = 1
    temperature: float = 0.7
    top_p: float = 1.0
    calibrate: str = ""  # a calibration mode (contextual, domain, batch), or "" for raw scores
    calibrate_n: int = 0  # estimation inputs (0: the mode's default)
    calibrate_transductive: bool = False  # estimate from the scored split's inputs, not train+dev
    show_options: bool | None = None  # list the labels in generated-answer prompts (None: where no log-likelihoods)
    spec: str = field(default="zero-shot", compare=False)

    @property
    def sampling(self) -> bool:
        return self.sc_n > 1

    @property
    def calibration(self) -> Calibration | None:
        if not self.calibrate:
            return None
        return Calibration(self.calibrate, self.calibrate_n, self.calibrate_transductive, self.demo_seed)

    def generates(self, task: Task, can_loglik: bool) -> bool:
        """Whether answers come from generated text (else: label log-likelihoods)."""
        return not task.labels or self.cot or self.sampling or not can_loglik

    def lists_options(self, task: Task, can_loglik: bool) -> bool:
        """Whether a generated-answer prompt names the labels ("Answer with one of: ...")."""
        if not task.labels or not self.generates(task, can_loglik):
            return False
        return self.show_options if self.show_options is not None else not can_loglik

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if not k.startswith("calibrate")}
        d["calibration"] = self.calibration.to_dict() if self.calibration else None
        return d

    # --- few-shot demos --------------------------------------------------------------
    def demos(self, task: Task, ex: Example) -> list[Example]:
        """k train demos, never the example being scored; one fixed set unless per_example."""
        if self.fewshot_k <= 0:
            return []
        if self.per_example:
            pool = [e for e in task.train if e.id != ex.id]
            return _draw(pool, self.fewshot_k, random.Random(f"{self.demo_seed}:{ex.id}"), self.balanced, task)
        chosen = _draw(task.train, self.fewshot_k, random.Random(self.demo_seed), self.balanced, task)
        if any(e.id == ex.id for e in chosen):
            # Scoring a train example that is in the fixed set: swap it for another of its label.
            rest = [e for e in task.train if e.id != ex.id and e not in chosen]
            same = [e for e in rest if e.label == ex.label] or rest
            swap = random.Random(f"{self.demo_seed}:{ex.id}").choice(same) if same else None
            chosen = [swap if e.id == ex.id else e for e in chosen]
            chosen = [e for e in chosen if e is not None]
        return chosen


def _draw(pool: list[Example], k: int, rng: random.Random, balanced: bool, task: Task) -> list[Example]:
    pool = list(pool)
    if balanced and task.labels:
        by_label: dict[str, list[Example]] = {}
        for e in pool:
            by_label.setdefault(e.label, []).append(e)
        for g in by_label.values():
            rng.shuffle(g)
        out: list[Example] = []
        labels = sorted(by_label)
        while len(out) < min(k, len(pool)):
            for lab in labels:
                if by_label[lab] and len(out) < k:
                    out.append(by_label[lab].pop())
        rng.shuffle(out)
        return out
    rng.shuffle(pool)
    return pool[:k]


# --- parsing -----------------------------------------------------------------------------

_FIELDS = {
    "fewshot": {
        "k": ("fewshot_k", int),
        "balanced": ("balanced", bool),
        "per_example": ("per_example", bool),
        "seed": ("demo_seed", int),
    },
    "cot": {"trigger": ("trigger", str), "answer_call": ("answer_call", bool), "max_tokens": ("cot_tokens", int)},
    "sc": {"n": ("sc_n", int), "temperature": ("temperature", float), "top_p": ("top_p", float)},
    "calibrate": {
        "mode": ("calibrate", str),
        "n": ("calibrate_n", int),
        "transductive": ("calibrate_transductive", bool),
    },
    "options": {"show": ("show_options", bool)},
}


def parse_harness(spec: str | None) -> Harness:
    """`fewshot:k=4+cot+sc:n=5,temperature=0.7` -> Harness. One clear error per mistake."""
    spec = (spec or "zero-shot").strip()
    if spec in ("zero-shot", "zeroshot", ""):
        return Harness()
    values: dict = {}
    seen: set[str] = set()
    for part in spec.split("+"):
        name, _, opts = part.strip().partition(":")
        if name in seen:
            raise PromptSearchError(
                f"Harness '{spec}' names '{name}' twice; give each part once, with all its "
                f"options after one colon ({name}:a=1,b=2)."
            )
        seen.add(name)
        if name in ("zero-shot", "zeroshot"):
            raise PromptSearchError(f"Harness '{spec}': zero-shot stands alone (it means no other part); drop it.")
        if name not in _FIELDS:
            import difflib

            close = difflib.get_close_matches(name, list(_FIELDS) + ["zero-shot"], n=1)
            hint = f" Did you mean: {close[0]}?" if close else ""
            raise PromptSearchError(
                f"Unknown harness '{name}' in '{spec}'.{hint} Use zero-shot, fewshot, cot, sc, "
                "calibrate, options, joined by '+'."
            )
        if name == "fewshot":
            values.setdefault("fewshot_k", 4)
        if name == "cot":
            values["cot"] = True
        if name == "sc":
            values.setdefault("sc_n", 5)
        if name == "calibrate":
            values.setdefault("calibrate", DEFAULT_MODE)
        for item in filter(None, (o.strip() for o in opts.split(","))):
            key, eq, raw = item.partition("=")
            if not eq or key not in _FIELDS[name]:
                raise PromptSearchError(
                    f"Harness option '{item}' of '{name}' is not one of: "
                    f"{', '.join(f'{k}=...' for k in _FIELDS[name])}."
                )
            attr, typ = _FIELDS[name][key]
            values[attr] = _convert(raw, typ, f"{name}:{key}")
    if "trigger" in values:
        values["trigger"] = TRIGGERS.get(values["trigger"], values["trigger"])
    h = Harness(**values, spec=spec)
    if h.sc_n < 1 or h.fewshot_k < 0 or h.cot_tokens < 1:
        raise PromptSearchError(f"Harness '{spec}': n and max_tokens must be at least 1, k at least 0.")
    if h.sampling and h.temperature <= 0:
        raise PromptSearchError(f"Harness '{spec}': self-consistency needs temperature > 0.")
    if h.calibrate and h.calibrate not in MODES:
        raise PromptSearchError(
            f"Harness '{spec}': calibrate:mode must be one of {', '.join(MODES)}, got {h.calibrate!r}."
        )
    if h.calibrate_n < 0:
        raise PromptSearchError(f"Harness '{spec}': calibrate:n must be at least 1 (or 0 for the mode's default).")
    if h.calibrate and (h.cot or h.sampling):
        raise PromptSearchError(
            f"Harness '{spec}': calibration corrects label log-likelihoods, and "
            f"{'cot' if h.cot else 'sc'} answers by generating text; drop one of them."
        )
    return h


def _convert(raw: str, typ, where: str):
    try:
        if typ is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return typ(raw)
    except ValueError:
        raise PromptSearchError(f"Harness option {where} must be {typ.__name__}, got {raw!r}.") from None


# --- answers -----------------------------------------------------------------------------

_STRICT = re.compile(r"(?:the answer is|answer\s*:)\s*[\"'“]?(.+?)[\"'”]?\s*(?:\.\s|\.$|\n|$)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")


def extract(text: str, task: Task, cot: bool) -> tuple[str | None, str]:
    """An answer from generated text, and how it was found: 'strict' (an "answer is" /
    "answer:" phrase), 'flexible' (the last label word, or the last number when the gold
    answers are numbers, or the first line without CoT), or None with 'unparsed'."""
    text = text.strip()
    matches = _STRICT.findall(text)
    if matches:
        ans = matches[-1].strip()
        if task.labels:
            m = re.match(r"\W*" + _label_pattern(task).pattern, ans, re.IGNORECASE)  # the label must come first
            if m:
                return _to_label(m.group(1), task), "strict"
        else:
            return ans, "strict"
    if task.labels:
        lab = _last_label(text, task)
        return (lab, "flexible") if lab is not None else (None, "unparsed")
    if not cot:
        first = text.split("\n")[0].strip()
        return (first, "flexible") if first else (None, "unparsed")
    if _numeric(task):
        nums = _NUMBER.findall(text)
        return (nums[-1].replace(",", ""), "flexible") if nums else (None, "unparsed")
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    return (lines[-1], "flexible") if lines else (None, "unparsed")


def _numeric(task: Task) -> bool:
    sample = [a for e in task.train[:50] for a in e.answers]
    return bool(sample) and all(_NUMBER.fullmatch(a.strip()) for a in sample)


def _label_pattern(task: Task) -> re.Pattern:
    words = sorted({w for lab, word in task.labels.items() for w in (lab, *label_words(word))}, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)


def _to_label(word: str, task: Task) -> str | None:
    for lab, verb in task.labels.items():
        if word.lower() in (lab.lower(), *(w.lower() for w in label_words(verb))):
            return lab
    return None


def _last_label(text: str, task: Task) -> str | None:
    found = _label_pattern(task).findall(text)
    return _to_label(found[-1], task) if found else None


def vote(answers: list[str | None]) -> str | None:
    """Majority over parsed answers; a tie goes to the answer that came first."""
    parsed = [a for a in answers if a is not None]
    if not parsed:
        return None
    counts = Counter(_norm(a) for a in parsed)
    top = max(counts.values())
    return next(a for a in parsed if counts[_norm(a)] == top)


def _norm(a: str) -> str:
    return " ".join(a.lower().split()).rstrip(".")
