"""GrIPS (Prasad et al. 2023, "Gradient-free, Edit-based Instruction Search"): phrase-level
edits of the current instruction, kept only when they beat it.

- Phrases: the instruction is cut at punctuation and before clause and phrase boundary
  words (and, or, that, which, of, for, the, ...), a parser-free stand-in for the paper's
  constituency leaves; no model or parser is downloaded.
- Edits: `del` (drop a phrase; it joins the pool `add` draws from), `swap` (two phrases
  change places), `add` (a deleted phrase inserted after a random phrase, or first) and,
  only with a proposer, `par` (the proposer rewords a phrase; the paper used PEGASUS).
- Each iteration: `candidates` edited instructions (`edits` edits each) scored on dev; the
  best replaces the incumbent only if it scores higher; after `patience` iterations without
  a better one the search stops. Paper defaults: m=5 candidates, l=1 edit, n=10 iterations,
  P=2.
- Score: the paper's objective for labelled tasks (balanced accuracy + 0.1 x the entropy of
  the predicted-label distribution, on the 0-1 scale; it penalises answering one label) or
  the task's metric (`objective=metric`). The result's dev score is the task's metric.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass

from promptsearch.candidates import Candidate
from promptsearch.errors import BudgetExhausted, PromptSearchError
from promptsearch.evaluation.evaluator import EvalResult, Evaluator
from promptsearch.searchers.base import Outcome, SearchContext, Searcher, option
from promptsearch.searchers.proposing import Proposer, chat_option, proposer_option
from promptsearch.searchers.templates import PARAPHRASE
from promptsearch.tasks.base import Task

# a phrase starts before these (lower-case, whole words)
_BOUNDARY = (
    "and",
    "or",
    "but",
    "that",
    "which",
    "who",
    "whether",
    "if",
    "because",
    "so",
    "then",
    "while",
    "when",
    "where",
    "of",
    "for",
    "with",
    "in",
    "on",
    "to",
    "by",
    "as",
    "from",
    "about",
    "into",
    "than",
    "the",
    "a",
    "an",
    "this",
    "each",
    "every",
)
_SPLIT = re.compile(r"(?<=[,;:.!?])\s+|\s+(?=(?:" + "|".join(_BOUNDARY) + r")\b)", re.IGNORECASE)


def phrases(text: str) -> list[str]:
    """The instruction's phrases, in order; joined with spaces they give the text back."""
    return [p for p in _SPLIT.split(text.strip()) if p]


def join(parts: list[str]) -> str:
    text = " ".join(p.strip() for p in parts if p.strip())
    text = re.sub(r"\s+([,;:.!?])", r"\1", text)
    return text[:1].upper() + text[1:] if text else ""


def delete(parts: list[str], i: int) -> tuple[list[str], str]:
    return parts[:i] + parts[i + 1 :], parts[i]


def swap(parts: list[str], i: int, j: int) -> list[str]:
    out = list(parts)
    out[i], out[j] = out[j], out[i]
    return out


def add(parts: list[str], phrase: str, after: int) -> list[str]:
    """`phrase` inserted after phrase `after` (-1: first)."""
    return parts[: after + 1] + [phrase] + parts[after + 1 :]


def paper_objective(result: EvalResult, task: Task) -> float:
    """Balanced accuracy + 0.1 x entropy (nats) of the predicted labels: GrIPS's score set
    objective (100 x balanced accuracy + 10 x entropy), divided by 100."""
    gold = {e.id: e.label for e in task.dev + task.train}
    labels = list(task.labels)
    per: dict[str, list[float]] = {}
    for i, s in zip(result.example_ids, result.scores):
        per.setdefault(gold[i], []).append(s)
    balanced = sum(sum(v) / len(v) for v in per.values()) / len(per)
    counts = Counter(result.predictions)
    freqs = [counts.get(lab, 0) / len(result.predictions) for lab in labels]
    entropy = -sum(f * math.log(f) for f in freqs if f > 0)
    return balanced + 0.1 * entropy


class GrIPSSearcher(Searcher):
    """Edit search over phrases of the current instruction; no writer model needed."""

    name = "grips"
    method_options = ("objective",)

    @dataclass
    class Config:
        candidates: int = option(5, "edited instructions per iteration (m)", min=1)
        edits: int = option(1, "edits composed into each candidate (l)", min=1)
        iterations: int = option(10, "search iterations (n)", min=1)
        patience: int = option(2, "iterations without a better instruction before stopping (P)", min=1)
        ops: str = option("del,swap,add,par", "edit operations, comma-separated (par only runs with a proposer)")
        objective: str = option(
            "paper",
            "paper: balanced accuracy + entropy of the predicted labels (labelled tasks); metric: the task's metric",
            choices=("paper", "metric"),
        )
        proposer: str = proposer_option(
            "model that rewords phrases for the par edit (default: none, par is skipped); 'target' for the target"
        )
        start: str = option("", "the instruction to start from (default: the task's first)")
        chat: str = chat_option()

    def search(self, task: Task, evaluator: Evaluator, context: SearchContext) -> Outcome:
        seed = context.seed
        cfg = self.config
        ops = [o.strip() for o in cfg.ops.split(",") if o.strip()]
        bad = [o for o in ops if o not in ("del", "swap", "add", "par")]
        if bad or not ops:
            raise PromptSearchError(
                f"Option 'ops' of searcher 'grips' takes del, swap, add, par (comma-separated), got {cfg.ops!r}."
            )
        start = cfg.start or (task.instructions[0] if task.instructions else "")
        if len(phrases(start)) < 2:
            raise PromptSearchError(
                f"GrIPS edits an instruction's phrases, and {start!r} has fewer than two; give one "
                "with -o start='...' or a task with a manual instruction."
            )
        prop = Proposer(cfg.proposer, evaluator, cfg.chat) if cfg.proposer and "par" in ops else None
        if prop is None:
            ops = [o for o in ops if o != "par"]
        rng = random.Random(f"grips:{seed}")
        use_paper = cfg.objective == "paper" and bool(task.labels)
        objective = (lambda r: paper_objective(r, task)) if use_paper else (lambda r: r.selection)
        plain = "metric" if evaluator.select_by == "accuracy" else evaluator.select_by
        notes: dict = {
            "objective": "balanced accuracy + 0.1 entropy" if use_paper else plain,
            "ops": ops,
            "templates": [PARAPHRASE.record()] if prop else [],
            "iterations": [],
        }
        seen: set[str] = set()
        stopped = ""
        best = Candidate(instruction=start, name="start", origin="grips:start")
        best_dev = best_obj = None
        try:
            res = evaluator.score(best, task.dev)
            best_obj, best_dev = objective(res), res.mean
            seen.add(start)
            deleted: list[str] = []
            waited = 0
            for it in range(1, cfg.iterations + 1):
                kids, made = [], []
                for k in range(cfg.candidates):
                    text, log, gone = self._edit(best.instruction, ops, deleted, rng, prop, seed * 1000 + it * 10 + k)
                    if not text or text in seen:
                        continue
                    seen.add(text)
                    kids.append(
                        Candidate(
                            instruction=text, name=f"grips-i{it:02d}-{len(kids) + 1}", origin=f"grips:{'+'.join(log)}"
                        )
                    )
                    made.append(gone)
                results = evaluator.score_many(kids, task.dev) if kids else []
                scored = [(objective(r), r.mean, c, gone) for r, c, gone in zip(results, kids, made)]
                top = max(scored, key=lambda s: s[0], default=None)
                improved = top is not None and top[0] > best_obj
                notes["iterations"].append(
                    {
                        "iteration": it,
                        "candidates": [c.instruction for c in kids],
                        "kept": top[2].instruction if improved else None,
                    }
                )
                if improved:
                    best_obj, best_dev, best = top[0], top[1], top[2]
                    deleted += top[3]
                    waited = 0
                else:
                    waited += 1
                evaluator.say(
                    f"GrIPS iteration {it}/{cfg.iterations}: {'a better instruction' if improved else 'no better'}"
                    f", best {best_dev:.3f} on dev ({evaluator.cost.calls} calls)"
                )
                if waited >= cfg.patience:
                    notes["stopped_early"] = f"no better instruction in {cfg.patience} iterations"
                    break
        except BudgetExhausted as e:
            stopped = str(e)
            if best_dev is None:  # not even the start instruction was scored
                raise
        notes["objective_score"] = round(best_obj, 4)
        return Outcome(best, best_dev, stopped, notes)

    def _edit(self, text: str, ops: list[str], deleted: list[str], rng: random.Random, prop, seed: int):
        """`edits` random edits of `text`: (new text, the edits made, phrases it deleted)."""
        parts, log, gone = phrases(text), [], []
        for _ in range(self.config.edits):
            usable = [o for o in ops if (o != "add" or deleted + gone) and (o not in ("del", "swap") or len(parts) > 1)]
            if not usable:
                break
            op = rng.choice(usable)
            if op == "del":
                parts, phrase = delete(parts, rng.randrange(len(parts)))
                gone.append(phrase)
            elif op == "swap":
                i, j = rng.sample(range(len(parts)), 2)
                parts = swap(parts, i, j)
            elif op == "add":
                parts = add(parts, rng.choice(deleted + gone), rng.randrange(-1, len(parts)))
            else:  # par
                i = rng.randrange(len(parts))
                said = prop.write([prop.fill(PARAPHRASE, phrase=parts[i])], 1, 24, 1.0, seed)
                new = said[0].strip().split("\n")[0].strip().strip("\"'“”").rstrip(".") if said else ""
                if not new:
                    continue
                parts = parts[:i] + [new] + parts[i + 1 :]
            log.append(op)
        return join(parts), log, gone
