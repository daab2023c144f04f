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

import itertools
import math
import random
from dataclasses import dataclass, replace

from promptsearch.backends.base import TokenIds, prompt_segments
from promptsearch.candidates import Candidate
from promptsearch.errors import BudgetExhausted, PromptSearchError
from promptsearch.evaluation.evaluator import EvalResult, Evaluator, label_set_logprobs
from promptsearch.evaluation.render import render, task_for
from promptsearch.searchers import objective
from promptsearch.searchers.base import Outcome, SearchContext, Searcher, local_model, option, until_budget
from promptsearch.tasks.base import Example, Task, label_words

LABEL_POOL = 1000  # label-word search: the tokens the model finds most likely at the answer position
MAX_LABEL_SETS = 64  # label sets scored on dev at most (more: coordinate ascent)


class AutoPromptSearcher(Searcher):
    """Gradient-guided token search for a trigger (AutoPrompt, with GCG's sampler)."""

    name = "autoprompt"
    trains_on_train = True
    method_options = ("search_labels",)
    needs = "a local transformers target (embedded or hf:...)"
    requires = ("local_model",)

    @dataclass
    class Config:
        length: int = option(5, "trigger tokens", min=1, max=64)
        position: str = option(
            "auto",
            "where the trigger goes: the template's {trigger} slot if it has one (auto), "
            "else after the input (auto, after_input) or before it",
            choices=("auto", "after_input", "before_input"),
        )
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
        labels: str = option(
            "", "label words to search the trigger for, LABEL:WORD,... (one vocabulary token each; default: the task's)"
        )
        search_labels: bool = option(False, "first pick label words from the vocabulary (labelled tasks)")
        label_candidates: int = option(4, "label-word search: words kept per class", min=1, max=32)

    def search(self, task: Task, evaluator: Evaluator, context: SearchContext) -> Outcome:
        seed = context.seed
        cfg = self.config
        backend = local_model(evaluator.backend, "AutoPrompt needs")  # gradients and next-token log-probs
        tok = backend.tokenizer
        # every check on the user's input before the first model call
        template = _trigger_template(task, cfg.position)
        if (cfg.labels or cfg.search_labels) and not task.labels:
            raise PromptSearchError(
                f"Task '{task.name}' has no labels, so AutoPrompt's label words "
                "(-o labels=, -o search_labels=true) do not apply; drop them."
            )
        if cfg.labels and cfg.search_labels:
            raise PromptSearchError(
                "Give label words (-o labels=...) or search for them (-o search_labels=true), not both."
            )
        import torch

        proto = Candidate(template=template, labels=_given_labels(tok, task, cfg.labels) if cfg.labels else None)
        rng = random.Random(seed)
        torch.manual_seed(seed)
        trigger = _init_trigger(tok, cfg.init, cfg.length)
        best_dev: EvalResult | None = None
        stale, stopped = 0, ""
        log: list[dict] = []
        label_log: list[dict] = []
        with until_budget() as stop:
            if cfg.search_labels:
                evaluator.say(f"AutoPrompt: searching label words ({cfg.label_candidates} per class)")
                proto, best_dev, label_log = _search_labels(backend, evaluator, task, proto, trigger, cfg)
            allowed = _allowed_tokens(tok, task_for(task, proto))
            evaluator.say(
                f"AutoPrompt: {cfg.iterations} iterations, trigger of {cfg.length} tokens, "
                f"{cfg.sampler} sampler, minibatches of {cfg.batch_size} train examples"
            )
            for it in range(1, cfg.iterations + 1):
                batch = rng.sample(task.train, min(cfg.batch_size, len(task.train)))
                grad = _trigger_grad(backend, task, _cand(proto, trigger, tok, it), batch)  # [n, V]
                cands = _sample(grad, trigger, allowed, cfg, rng)
                cands = [c for c in cands if _stable(tok, c)]
                pool = [trigger] + [c for c in dict.fromkeys(cands) if c != trigger]
                losses = _losses(evaluator, task, [_cand(proto, c, tok, it) for c in pool], batch)
                k = min(range(len(pool)), key=lambda i: (losses[i], i))  # losses[0]: the current trigger
                if k != 0 and losses[k] < losses[0] - 1e-6:
                    trigger, stale = pool[k], 0
                else:
                    stale += 1
                log.append(
                    {
                        "iteration": it,
                        "loss": round(min(losses), 4),
                        "trigger": list(trigger),
                        "text": tok.decode(list(trigger)),
                        "candidates": len(pool) - 1,
                    }
                )
                evaluator.say(
                    f"AutoPrompt {it}/{cfg.iterations}: train loss {min(losses):.3f}, "
                    f"trigger {tok.decode(list(trigger))!r}"
                )
                if it % cfg.eval_every == 0 or it == cfg.iterations or stale >= cfg.patience:
                    res = evaluator.score(_cand(proto, trigger, tok, it), task.dev)
                    if best_dev is None or res.selection > best_dev.selection:
                        best_dev = res
                if stale >= cfg.patience:
                    stopped = f"no better trigger for {cfg.patience} iterations"
                    break
        stopped = stop.reason or stopped
        if best_dev is None:
            raise BudgetExhausted(stopped or "no trigger was scored on dev")
        best = best_dev.candidate
        notes = {
            "trigger_ids": list(best.trigger or ()),
            "trigger_text": best.trigger_text,
            "template": template,
            "label_words": {lab: list(ws) for lab, ws in best.labels} if best.labels else None,
            "label_search": label_log,
            "iterations": log,
        }
        return Outcome(best, best_dev.mean, stopped, notes)


def _trigger_template(task: Task, position: str) -> str:
    template = task.template
    if "{trigger}" in template:
        if position != "auto":
            raise PromptSearchError(
                f"Task '{task.name}' places the trigger itself ({{trigger}} in its template "
                f"{template!r}); drop -o position={position}."
            )
        return template
    if "{input}" not in template:
        raise PromptSearchError(
            f"Task '{task.name}': its template {template!r} has neither a {{trigger}} nor an "
            "{input} slot, so there is no place for a trigger; add {trigger} to the template."
        )
    if position == "before_input":  # "Review: {input}" -> "Review:{trigger} {input}": the trigger brings its own spaces
        head, _, tail = template.partition("{input}")
        return head.rstrip(" ") + "{trigger}" + (" " if head.strip() else "") + "{input}" + tail
    return template.replace("{input}", "{input}{trigger}", 1)


def _cand(proto: Candidate, trigger: tuple[int, ...], tok, it: int) -> Candidate:
    text = tok.decode(list(trigger))
    return replace(
        proto, trigger=tuple(trigger), trigger_text=text, name=f"trigger {text!r}"[:60], origin=f"autoprompt:it{it}"
    )


def _given_labels(tok, task: Task, spec: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`-o labels=negative:terrible,positive:great`: each word must be one vocabulary token
    (after a space, as it follows the prompt), as AutoPrompt's label tokens are."""
    out: dict[str, tuple[str, ...]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        lab, sep, word = part.replace("=", ":", 1).partition(":")
        lab, word = lab.strip(), word.strip()
        if not sep or not lab or not word:
            raise PromptSearchError(
                f"-o labels: '{part}' is not LABEL:WORD; write e.g. "
                f"labels={','.join(f'{x}:WORD' for x in task.labels)}."
            )
        if lab not in task.labels:
            raise PromptSearchError(
                f"-o labels: '{lab}' is not a label of task '{task.name}' (its labels: {', '.join(task.labels)})."
            )
        ids = tok(" " + word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            pieces = ", ".join(repr(tok.decode([i])) for i in ids)
            raise PromptSearchError(
                f"-o labels: the label word '{word}' is {len(ids)} tokens for this model "
                f"({pieces}), not one vocabulary token; pick a word that is one token."
            )
        out[lab] = (word,)
    if not out:
        raise PromptSearchError("-o labels is empty; write LABEL:WORD pairs separated by commas.")
    return tuple(out.items())


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


def _losses(evaluator: Evaluator, task: Task, cands: list[Candidate], batch: list[Example]) -> list[float]:
    """Each candidate's minibatch loss, all candidates in one batched, cached evaluator call:
    cross-entropy over the label set from the label log-probabilities the evaluator
    classifies with, or, for open-answer tasks, the gold answer's negative log-likelihood."""
    if not task.labels:
        return [-sum(lps) / len(lps) for lps in evaluator.answer_logprobs(cands, batch)]
    gold = {e.id: e.label for e in batch}
    out = []
    for res in evaluator.score_many(cands, batch, split="train"):
        if not res.label_logprobs:  # a harness that classifies by generation: 1 - accuracy
            out.append(1.0 - res.mean)
            continue
        out.append(
            -sum(label_set_logprobs(row)[gold[ex_id]] for row, ex_id in zip(res.label_logprobs, res.example_ids))
            / len(res.label_logprobs)
        )
    return out


def _search_labels(backend, evaluator: Evaluator, task: Task, proto: Candidate, trigger: tuple[int, ...], cfg):
    """AutoPrompt's label-word search for a causal LM. On train, with the initial trigger in
    place, the next-token distribution at the answer position is read for every example;
    among the LABEL_POOL tokens the model finds most likely there, a word token scores for a
    class by how far its log-probability rises on that class's examples over the others'
    (Welch's t). The top `label_candidates` words per class are combined into label sets,
    every set is scored on dev through the evaluator beside the words the search started
    from, and the best is kept (ties: the given words)."""
    import torch

    tok = backend.tokenizer
    cand = replace(proto, trigger=trigger)
    t = task_for(task, cand)
    names = list(t.labels)
    lp = backend.next_token_logprobs([render(t, cand, ex, []) for ex in task.train])  # [N, V]
    y = torch.tensor([names.index(ex.label) for ex in task.train])
    pool = lp.mean(0).topk(min(LABEL_POOL, lp.shape[1])).indices
    words: dict[int, str] = {}
    for i in pool.tolist():
        s = tok.decode([i])
        if (
            s[:1] == " "
            and s[1:].isascii()
            and s[1:].isalpha()
            and len(s) > 3
            and tok(s, add_special_tokens=False).input_ids == [i]
        ):
            words[i] = s[1:]
    ids = torch.tensor(list(words))
    x = lp[:, ids]  # [N, W]
    taken: set[int] = set()
    per_class: list[list[str]] = []
    for c in range(len(names)):
        inn, out = x[y == c], x[y != c]
        if len(inn) < 2 or len(out) < 2:
            raise PromptSearchError(
                f"Label-word search needs at least 2 train examples of every label and of the "
                f"rest; '{names[c]}' has {len(inn)} of {len(x)}."
            )
        score = (inn.mean(0) - out.mean(0)) / (inn.var(0) / len(inn) + out.var(0) / len(out) + 1e-6).sqrt()
        best = [j for j in score.argsort(descending=True).tolist() if j not in taken][: cfg.label_candidates]
        taken.update(best)
        per_class.append([words[int(ids[j])] for j in best])
    sets = list(itertools.product(*per_class))
    if len(sets) > MAX_LABEL_SETS:  # too many to score all: one pass of coordinate ascent from the top words
        sets = [tuple(p[0] for p in per_class)]
        for c in range(len(names)):
            sets += [tuple(w if j != c else alt for j, w in enumerate(sets[0])) for alt in per_class[c][1:]]
    # the words the search starts from (the task's, or -o labels) race too, first: a found set
    # replaces them only if it scores better on dev
    word_sets = [tuple(tuple(label_words(t.labels[lab])) for lab in names)] + [tuple((w,) for w in ws) for ws in sets]
    label_cands = [
        replace(
            cand,
            labels=tuple(zip(names, ws)),
            trigger_text=tok.decode(list(trigger)),
            name="labels " + "/".join(w[0] for w in ws),
            origin="autoprompt:labels",
        )
        for ws in word_sets
    ]
    results = evaluator.score_many(label_cands, task.dev)
    k = max(range(len(results)), key=lambda i: (results[i].selection, -i))
    log = [
        {
            "words": {lab: w[0] for lab, w in zip(names, ws)},
            "dev": round(r.mean, 4),
            **({"given": True} if i == 0 else {}),
        }
        for i, (ws, r) in enumerate(zip(word_sets, results))
    ]
    evaluator.say(f"AutoPrompt: label words {log[k]['words']} (dev {results[k].mean:.3f} with the initial trigger)")
    return replace(proto, labels=label_cands[k].labels), results[k], log


def _trigger_grad(backend, task: Task, cand: Candidate, batch: list[Example]):
    """d loss / d one-hot(trigger), for the minibatch's mean loss: [length, vocab]."""
    import torch

    model = backend.model
    emb = model.get_input_embeddings()
    E = emb.weight  # [V, H]
    trigger = cand.trigger
    one_hot = torch.zeros(len(trigger), E.shape[0], dtype=E.dtype, device=E.device)
    one_hot[torch.arange(len(trigger)), torch.tensor(trigger)] = 1.0
    one_hot.requires_grad_(True)
    trig_emb = one_hot @ E  # [n, H]
    rows, reads = objective.answer_rows(backend, task, cand, batch)
    ids = objective.padded(rows, backend.tokenizer.pad_token_id, E.device)
    x = emb(ids).detach()  # [B, L, H]
    n = len(trigger)
    parts = []
    for _, r in sorted({r.row: r for r in reads}.items()):  # the trigger's embeddings at its place in each row
        segs = prompt_segments(r.prompt)
        start = len(backend.encode_prompt(segs[: next(i for i, s in enumerate(segs) if isinstance(s, TokenIds))]))
        parts.append(torch.cat([x[r.row, :start], trig_emb, x[r.row, start + n :]], dim=0))
    hidden = getattr(model, model.base_model_prefix)(inputs_embeds=torch.stack(parts)).last_hidden_state  # [B, L, H]
    objective.loss(objective.read_logprobs(hidden, backend.head, reads), reads, batch).backward()
    return one_hot.grad.detach()
