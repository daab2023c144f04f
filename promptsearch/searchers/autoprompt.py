"""AutoPrompt (Shin et al. 2020) for causal LMs, with GCG's candidate sampler (Zou et al. 2023).

A trigger of `length` tokens sits in the template (its `{trigger}` slot, or after / before the
input). Each iteration:
1. the gradient of the loss with respect to a one-hot encoding of the trigger, over a train
   minibatch, gives every vocabulary token a first-order score at every position
   (-grad · E, E the input embedding matrix);
2. candidates swap tokens for top-k ones (GCG: `search_width` candidates with `n_replace`
   random swaps; AutoPrompt: one random position, its top `candidates` tokens), filtered to
   printable, non-special, non-label tokens whose text re-encodes to the same ids;
3. the current trigger and all candidates are scored on the same minibatch through the
   evaluator (one batched, cached call); the best replaces the trigger if it is better.
Every `eval_every` iterations the current trigger is scored on dev; the dev-best is the result.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from promptsearch.backends.base import LoglikRequest, TokenIds, prompt_segments
from promptsearch.budget import Budget
from promptsearch.candidates import Candidate
from promptsearch.errors import BudgetExhausted, PromptSearchError
from promptsearch.evaluation.evaluator import EvalResult, Evaluator
from promptsearch.evaluation.render import continuation, render, task_for
from promptsearch.searchers.base import SearchResult, Searcher, option
from promptsearch.tasks.base import Example, Task, label_words


class AutoPromptSearcher(Searcher):
    """Gradient-guided token search for a trigger (AutoPrompt, with GCG's sampler)."""

    name = "autoprompt"
    needs = "a local transformers target (embedded or hf:...)"

    @dataclass
    class Config:
        length: int = option(5, "trigger tokens", min=1, max=64)
        position: str = option("after_input", "where the trigger goes when the template has no {trigger} slot",
                               choices=("after_input", "before_input"))
        init: str = option(" the", "text the trigger starts from (repeated/cut to `length` tokens)")
        iterations: int = option(12, "gradient steps at most", min=1)
        batch_size: int = option(16, "train examples per minibatch", min=1)
        sampler: str = option("gcg", "candidate sampler", choices=("gcg", "autoprompt"))
        topk: int = option(64, "top tokens per position by gradient", min=1)
        search_width: int = option(24, "GCG: candidates per iteration", min=1)
        n_replace: int = option(1, "GCG: token swaps per candidate", min=1)
        candidates: int = option(24, "AutoPrompt: tokens tried at the chosen position", min=1)
        eval_every: int = option(4, "score the current trigger on dev every this many iterations", min=1)
        patience: int = option(6, "stop after this many iterations without a better trigger", min=1)

    def search(self, task: Task, evaluator: Evaluator, budget: Budget, seed: int) -> SearchResult:
        cfg = self.config
        backend = evaluator.backend
        try:
            tok = backend.tokenizer  # only local transformers backends have one
        except AttributeError:
            raise PromptSearchError(
                f"AutoPrompt needs gradients from a local transformers model (embedded or hf:...); "
                f"'{backend.model_id}' gives none. Searchers that work with it: baseline, ape.") from None
        import torch

        template = _trigger_template(task.template, cfg.position)
        rng = random.Random(seed)
        torch.manual_seed(seed)
        allowed = _allowed_tokens(tok, task)
        trigger = _init_trigger(tok, cfg.init, cfg.length)
        best_dev: EvalResult | None = None
        stale, stopped = 0, ""
        log: list[dict] = []
        evaluator.say(f"AutoPrompt: {cfg.iterations} iterations, trigger of {cfg.length} tokens, "
                      f"{cfg.sampler} sampler, minibatches of {cfg.batch_size} train examples")
        try:
            for it in range(1, cfg.iterations + 1):
                batch = rng.sample(task.train, min(cfg.batch_size, len(task.train)))
                grad = _trigger_grad(backend, task, template, trigger, batch)  # [n, V]
                cands = _sample(grad, trigger, allowed, cfg, rng)
                cands = [c for c in cands if _stable(tok, c)]
                pool = [trigger] + [c for c in dict.fromkeys(cands) if c != trigger]
                scored = evaluator.score_many([_cand(c, template, tok, it) for c in pool], batch, split="train")
                gold = {e.id: e.label for e in batch}
                losses = [_loss(r, gold) for r in scored]  # losses[0]: the current trigger
                k = min(range(len(pool)), key=lambda i: (losses[i], i))
                if k != 0 and losses[k] < losses[0] - 1e-6:
                    trigger, stale = pool[k], 0
                else:
                    stale += 1
                log.append({"iteration": it, "loss": round(min(losses), 4), "trigger": list(trigger),
                            "text": tok.decode(list(trigger)), "candidates": len(pool) - 1})
                evaluator.say(f"AutoPrompt {it}/{cfg.iterations}: train loss {min(losses):.3f}, "
                              f"trigger {tok.decode(list(trigger))!r}")
                if it % cfg.eval_every == 0 or it == cfg.iterations or stale >= cfg.patience:
                    res = evaluator.score(_cand(trigger, template, tok, it), task.dev)
                    if best_dev is None or res.mean > best_dev.mean:
                        best_dev = res
                if stale >= cfg.patience:
                    stopped = f"no better trigger for {cfg.patience} iterations"
                    break
        except BudgetExhausted as e:
            stopped = str(e)
        if best_dev is None:
            raise BudgetExhausted(stopped or "no trigger was scored on dev")
        best = best_dev.candidate
        notes = {"trigger_ids": list(best.trigger or ()), "trigger_text": tok.decode(list(best.trigger or ())),
                 "template": template, "iterations": log}
        return SearchResult(best, best_dev.mean, list(evaluator.history), evaluator.cost, stopped, notes)


def _trigger_template(template: str, position: str) -> str:
    if "{trigger}" in template:
        return template
    if position == "before_input":
        return template.replace("{input}", "{trigger} {input}", 1)
    return template.replace("{input}", "{input}{trigger}", 1)


def _cand(trigger: tuple[int, ...], template: str, tok, it: int) -> Candidate:
    return Candidate(trigger=tuple(trigger), template=template, name=f"trigger {tok.decode(list(trigger))!r}"[:60],
                     origin=f"autoprompt:it{it}")


def _init_trigger(tok, text: str, n: int) -> tuple[int, ...]:
    ids = tok(text, add_special_tokens=False).input_ids or [tok.eos_token_id]
    return tuple((ids * n)[:n])


def _allowed_tokens(tok, task: Task):
    """Mask over the vocabulary: printable ASCII text, not special, not a label word's token."""
    import torch

    banned = set(tok.all_special_ids)
    for word in (task.labels or {}).values():
        for w in label_words(word):
            banned.update(tok(" " + w, add_special_tokens=False).input_ids)
            banned.update(tok(w, add_special_tokens=False).input_ids)
    ok = torch.zeros(len(tok), dtype=torch.bool)
    for i in range(len(tok)):
        if i in banned:
            continue
        s = tok.decode([i])
        ok[i] = bool(s.strip()) and s.isascii() and s.isprintable()
    return ok


def _stable(tok, trigger: tuple[int, ...]) -> bool:
    """The trigger's text re-encodes to the same ids, so the found trigger is pasteable text."""
    return tuple(tok(tok.decode(list(trigger)), add_special_tokens=False).input_ids) == tuple(trigger)


def _sample(grad, trigger: tuple[int, ...], allowed, cfg, rng: random.Random) -> list[tuple[int, ...]]:
    """Candidate triggers from the top-k tokens of -grad at each position."""
    scores = (-grad).masked_fill(~allowed[None, :], -math.inf)  # [n, V]
    top = scores.topk(min(cfg.topk, int(allowed.sum())), dim=1).indices.tolist()  # [n, k]
    out = []
    if cfg.sampler == "autoprompt":
        pos = rng.randrange(len(trigger))
        for t in top[pos][: cfg.candidates]:
            c = list(trigger)
            c[pos] = t
            out.append(tuple(c))
        return out
    for _ in range(cfg.search_width):
        c = list(trigger)
        for pos in rng.sample(range(len(trigger)), min(cfg.n_replace, len(trigger))):
            c[pos] = rng.choice(top[pos])
        out.append(tuple(c))
    return out


def _loss(res: EvalResult, gold: dict[str, str]) -> float:
    """Cross-entropy over the label set (from the evaluator's label log-probabilities; `gold`
    maps example id to label), or 1 - score for open-answer tasks."""
    if not res.label_logprobs:
        return 1.0 - res.mean
    total = 0.0
    for row, ex_id in zip(res.label_logprobs, res.example_ids):
        m = max(row.values())
        total += -(row[gold[ex_id]] - (m + math.log(sum(math.exp(v - m) for v in row.values()))))
    return total / len(res.label_logprobs)


def _trigger_grad(backend, task: Task, template: str, trigger: tuple[int, ...], batch: list[Example]):
    """d loss / d one-hot(trigger), summed over the minibatch: [length, vocab]."""
    import torch

    model, tok = backend.model, backend.tokenizer
    emb = model.get_input_embeddings()
    E = emb.weight  # [V, H]
    one_hot = torch.zeros(len(trigger), E.shape[0], dtype=E.dtype, device=E.device)
    one_hot[torch.arange(len(trigger)), torch.tensor(trigger)] = 1.0
    one_hot.requires_grad_(True)
    trig_emb = one_hot @ E  # [n, H]
    cand = Candidate(trigger=trigger, template=template)
    t = task_for(task, cand)
    rows, reads = [], []  # token ids with the trigger's place, and (row, positions, targets, example, label)
    for ex in batch:
        prompt = render(t, cand, ex, [])
        segs = prompt_segments(prompt)
        start = len(backend.encode_prompt(segs[: next(i for i, s in enumerate(segs) if isinstance(s, TokenIds))]))
        answers = [(lab, w) for lab, word in t.labels.items() for w in label_words(word)] if t.labels \
            else [(None, ex.answers[0])]
        for lab, word in answers:
            ctx, cont = backend._split_context(LoglikRequest(prompt, continuation(prompt, word)))
            reads.append((len(rows), start, list(range(len(ctx) - 1, len(ctx) - 1 + len(cont))), cont, ex, lab))
            rows.append(ctx + cont[:-1])
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), tok.pad_token_id, dtype=torch.long, device=E.device)  # [B, L], right-padded
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r)
    x = emb(ids).detach()  # [B, L, H]
    n = len(trigger)
    parts = []
    for b, (_, start, *_rest) in enumerate(reads):
        parts.append(torch.cat([x[b, :start], trig_emb, x[b, start + n:]], dim=0))
    logp = torch.log_softmax(model(inputs_embeds=torch.stack(parts)).logits.float(), dim=-1)  # [B, L, V]
    word_lp = [logp[b, pos, cont].sum() for b, _, pos, cont, _, _ in reads]
    if t.labels:
        loss = 0.0
        by_ex: dict[str, dict[str, list]] = {}
        for lp, (_, _, _, _, ex, lab) in zip(word_lp, reads):
            by_ex.setdefault(ex.id, {}).setdefault(lab, []).append(lp)
        for ex in batch:
            scores = {lab: torch.logsumexp(torch.stack(v), 0) for lab, v in by_ex[ex.id].items()}
            stacked = torch.stack(list(scores.values()))
            loss = loss - (scores[ex.label] - torch.logsumexp(stacked, 0))
    else:
        loss = -sum(word_lp)
    loss.backward()
    return one_hot.grad.detach()
