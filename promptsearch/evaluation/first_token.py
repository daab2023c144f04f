"""Label scores from the first token of a chat model's answer.

A chat API cannot score a given continuation, but OpenAI's, vLLM's, SGLang's and llama.cpp's
servers return the `top_logprobs` (up to 20) most likely first tokens of the answer with
their log-probabilities. After a prompt that names the labels ("Answer with one of: ..."),
a label's score is the probability that the answer starts with it:

- **Matching.** A returned token counts for a label when, with its leading space marker
  (" ", "Ġ", "▁") removed and case folded, it is a prefix of one of the label's words, or
  the word is a prefix of it ("Pos", " positive" and "Positive" all count for `positive`).
  The matching tokens are distinct answers, so their probabilities add up.
- **Labels whose first tokens coincide.** A token that begins two labels' words ("New" for
  "New York" and "New Jersey") cannot tell them apart: its probability is split equally
  between them, and the examples where that happened are counted (`shared_first_token`).
  Label words with different first words avoid it.
- **Labels outside the top K.** A label none of whose tokens came back has at most what the
  listed tokens leave: min(p of the K-th token, (1 - their total) / m) for m such labels.
  That bound is its score, and every label scored by it is counted (`outside_top_k`).

The scores are log-probabilities like label log-likelihoods, so calibration, gold-label
probabilities and every searcher read them the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from promptsearch.evaluation.stats import logsumexp
from promptsearch.tasks.base import label_words

TOP_K = 20  # the most OpenAI's chat API returns
SPACE_MARKS = " \t\r\n\u0120\u2581\u010a"  # a space, byte-level BPE's "Ġ" and "Ċ", SentencePiece's "▁"
FLOOR = 1e-9  # the least a bound gives, so a label the top K leave no room for keeps a finite score


def normal(text: str) -> str:
    return text.lstrip(SPACE_MARKS).casefold()


@dataclass
class LabelScores:
    logprobs: dict[str, float]  # per label: log P(the answer starts with it)
    outside_top_k: int  # labels scored by the bound
    shared: bool  # a token began more than one label


def label_scores(top: list, labels: dict) -> LabelScores:
    """Per label, the log-probability that the answer starts with one of its words, from the
    first token's top log-probabilities (`top`: [token, log-probability] pairs)."""
    words = {lab: [w for w in (normal(x) for x in label_words(ws)) if w] for lab, ws in labels.items()}
    mass: dict[str, list[float]] = {lab: [] for lab in labels}
    shared, seen, listed = False, set(), []
    for token, lp in top:
        if token in seen or lp is None or not math.isfinite(lp):
            continue
        seen.add(token)
        listed.append(lp)
        t = normal(token)
        if not t:
            continue
        hits = [lab for lab, ws in words.items() if any(w.startswith(t) or t.startswith(w) for w in ws)]
        if len(hits) > 1:
            shared = True
        for lab in hits:
            mass[lab].append(lp - math.log(len(hits)))
    absent = [lab for lab, m in mass.items() if not m]
    out = {lab: logsumexp(m) for lab, m in mass.items() if m}
    if absent:
        least = math.exp(min(listed)) if listed else 1.0
        left = max(0.0, 1.0 - sum(math.exp(v) for v in listed))
        bound = max(min(least, left / len(absent)), FLOOR)
        out.update({lab: math.log(bound) for lab in absent})
    return LabelScores({lab: out[lab] for lab in labels}, len(absent), shared)
