"""Continuous prompts with PEFT: prompt tuning (Lester et al. 2021), P-tuning (Liu et al.,
"GPT Understands, Too") and prefix tuning (Li & Liang 2021).

PEFT builds the parameterisation (`PromptTuningConfig`, `PromptEncoderConfig`,
`PrefixTuningConfig` on the target model; the base weights stay frozen and untouched) and
`get_prompt` gives the virtual tokens with their graph. Each step runs a train minibatch
through the target with those virtual tokens in front, exactly as the HF backend scores a
soft prompt (vectors before the input embeddings, or per-layer keys/values before the
input), and takes an AdamW step on the loss the evaluator's scoring implies (label-set
cross-entropy, or the gold answer's negative log-likelihood). Every `eval_every` steps the
prompt as it is (P-tuning's encoder run once; prefix tuning's keys and values) is scored on
dev by the evaluator, through its cache; the dev-best prompt is the result. The nearest
vocabulary token to each learned vector (cosine) is its readout, scored on dev as a
discrete prompt so the run shows what discretising loses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from promptsearch.backends.base import SoftPrompt
from promptsearch.backends.hf import quiet_library_deprecations
from promptsearch.candidates import Candidate
from promptsearch.errors import BudgetExhausted, PromptSearchError
from promptsearch.evaluation.evaluator import EvalResult, Evaluator
from promptsearch.searchers import objective
from promptsearch.searchers.base import Outcome, SearchContext, Searcher, local_model, option, until_budget
from promptsearch.searchers.stored import best_stored_prompt
from promptsearch.tasks.base import Task

GENERIC_INIT = "Read the input and give the answer."


class SoftPromptSearcher(Searcher):
    """Learned continuous prompts (PEFT): prompt tuning, P-tuning or prefix tuning."""

    name = "soft"
    trains_on_train = True
    method_options = ("method", "init")
    needs = "a local transformers target (embedded or hf:...)"
    requires = ("local_model",)

    @dataclass
    class Config:
        method: str = option(
            "prompt",
            "prompt (Lester et al.), ptuning (prompt encoder) or prefix (per-layer KV)",
            choices=("prompt", "ptuning", "prefix"),
        )
        num_virtual_tokens: int = option(8, "virtual tokens", min=1, max=256)
        init: str = option(
            "text",
            "prompt tuning's start: text, vocab (sampled token embeddings), random, or best "
            "(the best discrete prompt stored for this task and model)",
            choices=("text", "vocab", "random", "best"),
        )
        init_text: str = option("", "text for init=text (default: the task's first manual instruction)")
        truncate: bool = option(True, "cut an init text longer than the virtual tokens (false: refuse it)")
        encoder: str = option("mlp", "P-tuning's prompt encoder", choices=("mlp", "lstm"))
        encoder_hidden: int = option(128, "P-tuning: encoder hidden size", min=1)
        steps: int = option(60, "optimizer steps at most", min=1)
        lr: float = option(0.03, "AdamW learning rate", above=0)
        batch_size: int = option(8, "train examples per step", min=1)
        eval_every: int = option(10, "score the prompt on dev every this many steps", min=1)
        patience: int = option(3, "stop after this many dev scorings without improvement", min=1)

    def search(self, task: Task, evaluator: Evaluator, context: SearchContext) -> Outcome:
        seed = context.seed
        cfg = self.config
        backend = local_model(evaluator.backend, "Soft prompts need")  # the model, its head, soft hidden states
        model, tok = backend.model, backend.tokenizer
        init_text, init_from = _init_text(task, cfg, context, backend)
        if init_text is not None and not cfg.truncate:
            n = len(tok(init_text, add_special_tokens=False).input_ids)
            if n > cfg.num_virtual_tokens:
                raise PromptSearchError(
                    f"init_text is {n} tokens, more than num_virtual_tokens={cfg.num_virtual_tokens}, "
                    "and truncate=false; raise num_virtual_tokens or shorten the text."
                )
        import torch

        torch.manual_seed(seed)
        rng = random.Random(seed)
        peft_model = _peft_model(model, backend, cfg, init_text)
        params = [p for p in peft_model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr)
        best: EvalResult | None = None
        best_state = None  # the dev-best PEFT weights
        stale, stopped, log = 0, "", []
        evaluator.say(
            f"Soft prompt ({cfg.method}, {cfg.num_virtual_tokens} virtual tokens, init {cfg.init}): "
            f"{cfg.steps} steps of {cfg.batch_size} train examples"
        )
        with until_budget() as stop:
            for step in range(1, cfg.steps + 1):
                evaluator.check_budget(0)  # time and call budgets stop training too
                batch = rng.sample(task.train, min(cfg.batch_size, len(task.train)))
                loss = _batch_loss(peft_model, backend, task, batch, cfg.method)
                opt.zero_grad()
                loss.backward()
                opt.step()
                loss = loss.item()
                log.append({"step": step, "loss": round(loss, 4)})
                if evaluator.progress:
                    evaluator.progress(f"train · loss {loss:.3f}", step, cfg.steps)
                if step % cfg.eval_every == 0 or step == cfg.steps:
                    sp = _learned(peft_model, cfg.method, f"{cfg.method}-{cfg.num_virtual_tokens}-s{step}")
                    res = evaluator.score(
                        Candidate(
                            soft_prompt=sp, name=f"{cfg.method} step {step}", origin=f"soft:{cfg.method}:step{step}"
                        ),
                        task.dev,
                    )
                    log[-1]["dev"] = round(res.mean, 4)
                    evaluator.say(f"Soft prompt step {step}/{cfg.steps}: train loss {loss:.3f}, dev {res.mean:.3f}")
                    if best is None or res.selection > best.selection:
                        best, stale = res, 0
                        # the whole prompt module (P-tuning's encoder too), as PEFT's own
                        # state dict keeps only the encoder's output
                        best_state = {k: v.detach().clone() for k, v in _encoder(peft_model).state_dict().items()}
                    else:
                        stale += 1
                        if stale >= cfg.patience:
                            stopped = f"no better dev score for {cfg.patience} scorings"
                            break
        stopped = stop.reason or stopped
        try:
            if best is None:
                raise BudgetExhausted(stopped or "the soft prompt was never scored on dev")
            _encoder(peft_model).load_state_dict(best_state)
            sp = best.candidate.soft_prompt
            saved = _save(peft_model, sp)
        finally:
            _unwrap(peft_model)
        # prefix tuning's keys and values have no text to start from: PEFT starts them at random
        init = (
            "random (prefix tuning has no text init)" if cfg.method == "prefix" and cfg.init != "random" else cfg.init
        )
        notes: dict = {
            "method": cfg.method,
            "num_virtual_tokens": cfg.num_virtual_tokens,
            "init": init,
            "init_text": init_text,
            "init_from": init_from,
            "steps": log,
            "fingerprint": sp.fingerprint(),
            "saved": str(saved),
        }
        readout = _readout(sp, model, tok)
        if readout is not None:
            ids, cos = readout
            notes["readout"] = {
                "ids": ids,
                "text": tok.decode(ids),
                "cosine": cos,
                "note": "nearest vocabulary token to each learned vector; the vectors are not text",
            }
            # scored outside the search budget, like test scoring: a search the budget stopped
            # still shows what discretising its prompt loses
            r = evaluator.outside_budget().score(
                Candidate(trigger=tuple(ids), trigger_text=tok.decode(ids), name="readout", origin="soft:readout"),
                task.dev,
            )
            evaluator.history.append(r)
            notes["readout"]["dev"] = round(r.mean, 4)
        return Outcome(best.candidate, best.mean, stopped, notes)


def _init_text(task: Task, cfg, context, backend) -> tuple[str | None, dict | None]:
    """The text prompt tuning starts from, and for init=best the stored run it came from."""
    if cfg.init == "text":
        return cfg.init_text or (task.instructions[0] if task.instructions else GENERIC_INIT), None
    if cfg.init != "best":
        return None, None
    try:
        return best_stored_prompt(
            task, context.runs, backend.model_id, "init=best", skip=("soft",), task_hash=context.task_hash
        )
    except PromptSearchError as e:
        raise PromptSearchError(f"{e} Or use init=text.") from None


def _peft_model(model, backend, cfg, init_text: str | None):
    from peft import (
        PrefixTuningConfig,
        PromptEncoderConfig,
        PromptEncoderReparameterizationType,
        PromptTuningConfig,
        PromptTuningInit,
        TaskType,
        get_peft_model,
    )

    n = cfg.num_virtual_tokens
    if cfg.method == "prompt":
        init = {
            "text": PromptTuningInit.TEXT,
            "best": PromptTuningInit.TEXT,
            "vocab": PromptTuningInit.SAMPLE_VOCAB,
            "random": PromptTuningInit.RANDOM,
        }[cfg.init]
        conf = PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=n,
            prompt_tuning_init=init,
            prompt_tuning_init_text=init_text if init == PromptTuningInit.TEXT else None,
            tokenizer_name_or_path=backend.name_or_path if init == PromptTuningInit.TEXT else None,
        )
    elif cfg.method == "ptuning":
        enc = {"mlp": PromptEncoderReparameterizationType.MLP, "lstm": PromptEncoderReparameterizationType.LSTM}
        conf = PromptEncoderConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=n,
            encoder_reparameterization_type=enc[cfg.encoder],
            encoder_hidden_size=cfg.encoder_hidden,
        )
    else:
        conf = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=n)
    with quiet_library_deprecations():
        pm = get_peft_model(model, conf)
    if cfg.method == "ptuning" and init_text is not None:
        _init_from_text(pm, backend, init_text, n)
    return pm


def _init_from_text(pm, backend, text: str, n: int) -> None:
    """PEFT initialises P-tuning's encoder input randomly; for a text init it starts from the
    text's token embeddings (the encoder input has the model's hidden size; prefix tuning's
    keys and values have no such counterpart and stay random)."""
    import torch

    ids = backend.tokenizer(text, add_special_tokens=False).input_ids
    ids = (ids * n)[:n] if ids else []
    if not ids:
        return
    emb = pm.prompt_encoder[pm.active_adapter].embedding
    with torch.no_grad():
        emb.weight[: len(ids)] = backend.model.get_input_embeddings().weight[torch.tensor(ids)].to(emb.weight.dtype)


def _encoder(pm):
    return pm.prompt_encoder[pm.active_adapter]


def _prompt(pm, method: str):
    """The virtual tokens with their graph: [n, H] vectors, or per-layer (keys, values)."""
    if method != "prefix":
        return pm.get_prompt(batch_size=1)[0]
    pkv = pm.get_prompt(batch_size=1)
    if hasattr(pkv, "layers"):  # a transformers Cache
        return [(layer.keys[0], layer.values[0]) for layer in pkv.layers]
    return [(kv[0][0], kv[1][0]) for kv in pkv]  # legacy: per layer [2, batch, heads, n, dim]


def _learned(pm, method: str, name: str) -> SoftPrompt:
    import torch

    with torch.no_grad():
        p = _prompt(pm, method)
        if method == "prefix":
            return SoftPrompt(
                kv=tuple((k.detach().float().cpu().clone(), v.detach().float().cpu().clone()) for k, v in p), name=name
            )
        return SoftPrompt(vectors=p.detach().float().cpu().clone(), name=name)


def _batch_loss(pm, backend, task: Task, batch, method: str):
    """The minibatch loss with the virtual tokens in front, through the backend's own
    soft-prompt forward pass (the one scoring uses)."""
    rows, reads = objective.answer_rows(backend, task, Candidate(), batch)
    ids = objective.padded(rows, backend.tokenizer.pad_token_id, backend.model.device)  # right padding needs no mask
    p = _prompt(pm, method)
    hidden = backend.soft_hidden(ids, SoftPrompt(kv=p) if method == "prefix" else SoftPrompt(vectors=p))
    return objective.loss(objective.read_logprobs(hidden, backend.head, reads), reads, batch)


def _readout(sp: SoftPrompt, model, tok) -> tuple[list[int], list[float]] | None:
    """Nearest vocabulary token (cosine) to each vector; prefix tuning has no input vectors."""
    import torch

    if sp.vectors is None:
        return None
    E = model.get_input_embeddings().weight.detach().float().cpu()
    v = torch.as_tensor(sp.vectors).float()
    sims = torch.nn.functional.normalize(v, dim=-1) @ torch.nn.functional.normalize(E, dim=-1).T  # [n, V]
    special = torch.tensor(sorted(set(tok.all_special_ids)), dtype=torch.long)
    sims[:, special] = -2.0
    best = sims.max(dim=-1)
    return best.indices.tolist(), [round(float(c), 4) for c in best.values]


def _unwrap(pm) -> None:
    """Leave the target as it was: PEFT's prompt learning wraps the model without changing
    its modules; only the frozen flags are restored."""
    for p in pm.get_base_model().parameters():
        p.requires_grad_(False)


def _save(pm, sp: SoftPrompt) -> Path:
    """The dev-best prompt as a PEFT adapter (`save_pretrained`, safetensors) under the
    promptsearch home, named by its fingerprint; `PeftModel.from_pretrained(base, folder)`
    loads it, and `promptsearch export` copies it out."""
    from promptsearch.settings import get_settings

    folder = get_settings().home / "soft_prompts" / sp.fingerprint()
    pm.save_pretrained(str(folder))
    return folder
