"""The training objective the white-box searchers share (AutoPrompt's gradient, soft-prompt
training): token rows for every (example, answer word) pair, tokenised exactly as the
evaluator's scoring tokenises them, and the loss that scoring implies.

- Labelled tasks: cross-entropy over the label set, each label's log-probability being the
  log of the summed probabilities of its words (the quantity the evaluator classifies
  with; multi-token and several-word labels work).
- Open-answer tasks: the first gold answer's negative log-likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptsearch.backends.base import LoglikRequest, Prompt
from promptsearch.candidates import Candidate
from promptsearch.evaluation.render import continuation, render, task_for
from promptsearch.tasks.base import Example, Task, label_words


@dataclass
class Read:
    row: int  # index into the rows
    positions: list[int]  # where the answer's tokens are predicted (logits at these positions)
    targets: list[int]  # the answer's token ids
    example: Example
    label: str | None  # None for open-answer tasks
    prompt: Prompt


def answer_rows(backend, task: Task, cand: Candidate, batch: list[Example]) -> tuple[list[list[int]], list[Read]]:
    """Token rows for the batch's (example, answer word) pairs: the context's ids and all but
    the answer's last token, with where each answer token is read. Answers whose row is a
    prefix of another's share it (every one-token label of an example is read from one row),
    as causal attention makes a position's logits blind to what follows it."""
    t = task_for(task, cand)
    rows: list[list[int]] = []
    reads: list[Read] = []
    for ex in batch:
        prompt = render(t, cand, ex, [])
        answers = (
            [(lab, w) for lab, word in t.labels.items() for w in label_words(word)]
            if t.labels
            else [(None, ex.answers[0])]
        )
        mine: list[int] = []  # this example's rows
        for lab, word in answers:
            ctx, cont = backend.split_context(LoglikRequest(prompt, continuation(prompt, word)))
            row = ctx + cont[:-1]
            at = next((i for i in mine if rows[i][: len(row)] == row or row[: len(rows[i])] == rows[i]), None)
            if at is None:
                at = len(rows)
                mine.append(at)
                rows.append(row)
            elif len(row) > len(rows[at]):
                rows[at] = row
            reads.append(Read(at, list(range(len(ctx) - 1, len(ctx) - 1 + len(cont))), cont, ex, lab, prompt))
    return rows, reads


def padded(rows: list[list[int]], pad_id: int, device=None):
    """[B, L] right-padded ids (causal attention never lets a token see the pads after it,
    and pads are never read, so no attention mask is needed)."""
    import torch

    ids = torch.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r)
    return ids.to(device)


def read_logprobs(hidden, head, reads: list[Read]):
    """Each read's answer log-probability (a 0-d tensor with its graph) from the final hidden
    states [B, L, H]; the LM head runs only at the read positions."""
    import torch

    out = []
    for r in reads:
        pos = torch.tensor(r.positions, device=hidden.device)
        lsm = torch.log_softmax(head(hidden[r.row, pos]).float(), dim=-1)
        out.append(
            lsm[torch.arange(len(r.targets), device=hidden.device), torch.tensor(r.targets, device=hidden.device)].sum()
        )
    return out


def loss(word_lp: list, reads: list[Read], batch: list[Example]):
    """Mean over the batch: label-set cross-entropy, or the gold answer's negative log-likelihood."""
    import torch

    if reads and reads[0].label is None:
        return -torch.stack(word_lp).sum() / len(batch)
    by_ex: dict[str, dict[str, list]] = {}
    for lp, r in zip(word_lp, reads):
        by_ex.setdefault(r.example.id, {}).setdefault(r.label, []).append(lp)
    total = 0.0
    for ex in batch:
        scores = {lab: torch.logsumexp(torch.stack(v), 0) for lab, v in by_ex[ex.id].items()}
        total = total - (scores[ex.label] - torch.logsumexp(torch.stack(list(scores.values())), 0))
    return total / len(batch)
