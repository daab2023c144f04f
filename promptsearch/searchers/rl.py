"""RL prompt search: a small policy LM trained with TRL (GRPO or RLOO) to write prompts.

Two styles:
- `instruction` (default): the policy reads a meta-prompt showing a few train demos and
  writes an instruction of at most `prompt_length` tokens.
- `tokens` (RLPrompt, Deng et al. 2022): from a fixed input the policy emits exactly
  `trigger_length` (5) tokens of printable vocabulary, placed where the template puts a trigger.

Reward: every written prompt is scored by the evaluator (cached) on a train minibatch drawn
per step. For labelled tasks it is RLPrompt's gap reward: the correct label's probability
minus the best wrong label's, weighted 1.8 when the prediction is right and 2.0 when it is
wrong (RLPrompt's 180/200), averaged over the minibatch; open-answer tasks use the metric.
The trainer normalises rewards per group of `num_generations` completions of one prompt
(GRPO's `scale_rewards="group"`, RLPrompt's per-batch z-score). Every prompt is kept with
its train rewards; every `eval_every` steps and at the end the best by train reward race on
dev through the evaluator, and the dev-best is the result.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from promptsearch.backends.hf import quiet_library_deprecations
from promptsearch.candidates import Candidate
from promptsearch.errors import BudgetExhausted, PromptSearchError
from promptsearch.evaluation.evaluator import EvalResult, Evaluator, label_set_logprobs
from promptsearch.searchers.base import Outcome, SearchContext, Searcher, option
from promptsearch.tasks.base import Task
from promptsearch.text import shorten

CORRECT, WRONG = 1.8, 2.0  # RLPrompt's gap-reward weights (180 and 200, per percent)
META = (
    "Here are examples of a task, each an input and its correct output.\n\n{demos}\n\n"
    "Write one short instruction that tells someone how to do this task."
)


class RLSearcher(Searcher):
    """A prompt-writing policy trained with TRL's GRPO or RLOO on the evaluator's reward."""

    name = "rl"
    trains_on_train = True
    method_options = ("style",)
    needs = "a local transformers policy (default: the target, when it is local)"
    checkpoints = True

    def check(self, backend) -> None:
        _policy_path(self.config.policy, backend)  # a policy given, or a local target to start from

    @dataclass
    class Config:
        style: str = option(
            "instruction",
            "what the policy writes: an instruction, or trigger tokens (RLPrompt)",
            choices=("instruction", "tokens"),
        )
        trainer: str = option("grpo", "TRL trainer", choices=("grpo", "rloo"))
        policy: str = option("", "policy model (a local folder or hf:NAME; default: the target's model)")
        steps: int = option(12, "training steps", min=1)
        num_generations: int = option(4, "prompts written per step (one group)", min=2)
        prompt_length: int = option(16, "instruction style: tokens the policy writes at most", min=1, max=128)
        trigger_length: int = option(
            5, "tokens style: trigger tokens the policy writes, exactly (RLPrompt: 5)", min=1, max=64
        )
        batch_size: int = option(8, "train examples each prompt is rewarded on per step", min=1)
        lr: float = option(1e-4, "learning rate", above=0)
        lora: bool = option(True, "train LoRA adapters on the policy (false: all weights)")
        lora_r: int = option(8, "LoRA rank", min=1)
        temperature: float = option(1.0, "policy sampling temperature", above=0)
        demos: int = option(4, "instruction style: train demos in the meta-prompt", min=1)
        eval_every: int = option(4, "race the best prompts so far on dev every this many steps", min=1)
        race: int = option(4, "prompts raced on dev each time", min=1)
        use_vllm: bool = option(
            False,
            "generate the policy's prompts with vLLM through TRL (a CUDA machine with vllm "
            "installed); generation dominates a GRPO step on a GPU",
        )
        vllm_mode: str = option(
            "colocate",
            "colocate: vLLM in this process, sharing the GPU; server: a `trl vllm-serve` "
            "server at vllm_server_base_url",
            choices=("colocate", "server"),
        )
        vllm_server_base_url: str = option(
            "", "vllm_mode=server: the server's URL (default TRL's, http://0.0.0.0:8000)"
        )
        vllm_gpu_memory_utilization: float = option(
            0.3, "vllm_mode=colocate: share of GPU memory vLLM may take", above=0, max=1
        )
        checkpoint_every: int = option(4, "save a checkpoint every this many steps (runs started from the CLI)", min=1)

    def search(self, task: Task, evaluator: Evaluator, context: SearchContext) -> Outcome:
        seed = context.seed
        cfg = self.config
        policy_path = _policy_path(cfg.policy, evaluator.backend)
        import torch

        torch.manual_seed(seed)
        rng = random.Random(seed)
        tok = _tokenizer(policy_path)
        template = None
        if cfg.style == "tokens":
            from promptsearch.searchers.autoprompt import _allowed_tokens, _trigger_template

            template = _trigger_template(task, "auto")
            banned = (~_allowed_tokens(tok, task)).nonzero().flatten().tolist()
        pool: dict[str, dict] = {}  # candidate key -> {"cand", "rewards"}
        curve: list[dict] = []
        step_seconds: list[float] = []  # wall time per step, this process's steps only
        state = {"step": 0}

        def to_cand(text: str, ids: list[int], i: int) -> Candidate:
            if cfg.style == "tokens":
                ids = list(ids)[: cfg.trigger_length]
                return Candidate(
                    trigger=tuple(ids),
                    template=template,
                    trigger_text=tok.decode(ids),
                    name=shorten(f"rl {tok.decode(ids)!r}", 60),
                    origin=f"rl:step{state['step']}",
                )
            # step and place in the group: every prompt of a run has its own name
            return Candidate(instruction=text, name=f"rl-s{state['step']}.{i + 1}", origin=f"rl:step{state['step']}")

        def reward(prompts, completions, completion_ids, **kw) -> list[float]:
            state["step"] += 1
            now = time.perf_counter()  # since the previous reward: generation, then the update before it
            seconds, state["t"] = now - state["t"], now
            texts = [_text(c) for c in completions]
            cands = [to_cand(t, ids, i) for i, (t, ids) in enumerate(zip(texts, completion_ids))]
            usable = [i for i, c in enumerate(cands) if c.instruction.strip() or c.trigger]
            batch = rng.sample(task.train, min(cfg.batch_size, len(task.train)))
            rewards = [-WRONG] * len(cands)  # an empty instruction earns the worst reward
            if usable:
                for i, r in zip(usable, evaluator.score_many([cands[i] for i in usable], batch, split="train")):
                    rewards[i] = _gap_reward(r, batch) if r.label_logprobs else r.mean
                    entry = pool.setdefault(cands[i].key(), {"cand": cands[i], "rewards": [], "steps": []})
                    entry["rewards"].append(rewards[i])
                    entry["steps"].append(state["step"])
            curve.append(
                {
                    "step": state["step"],
                    "mean_reward": round(sum(rewards) / len(rewards), 4),
                    "max_reward": round(max(rewards), 4),
                    "zero_spread": len(set(round(x, 6) for x in rewards)) == 1,
                }
            )
            step_seconds.append(round(seconds + time.perf_counter() - now, 2))  # wall time, not in the curve
            best = max(pool.values(), key=_mean, default=None)
            evaluator.say(
                f"RL step {state['step']}/{cfg.steps}: mean reward {curve[-1]['mean_reward']:+.3f}, "
                f"max {curve[-1]['max_reward']:+.3f}; best so far: "
                f"{best['cand'].describe()[:50] if best else '-'}"
            )
            if evaluator.progress:
                evaluator.progress("rl · steps", state["step"], cfg.steps)
            return rewards

        dataset = _dataset(task, cfg, rng, tok)
        out_dir = context.workdir / "trainer" if context.workdir else None
        with quiet_library_deprecations():
            trainer = _trainer(
                cfg, policy_path, tok, reward, dataset, banned if cfg.style == "tokens" else None, seed, out_dir
            )
        race_results: list[EvalResult] = []
        stopped = ""
        raced: set[str] = set()
        resume_from = None
        if context.resuming and out_dir is not None:
            resume_from, saved = _last_checkpoint(context.workdir)
            if saved is not None:  # the state at that step; the cache answers the dev race again for free
                state["step"] = saved["step"]
                rng.setstate(_tuple(saved["rng"]))
                curve[:] = saved["curve"]
                for e in saved["pool"]:
                    c = Candidate.from_dict(e["cand"])
                    pool[c.key()] = {"cand": c, "rewards": e["rewards"], "steps": e["steps"]}
                if saved["raced"]:
                    race_results.extend(
                        evaluator.score_many([Candidate.from_dict(d) for d in saved["raced"]], task.dev)
                    )
                    raced.update(r.candidate.key() for r in race_results)
                evaluator.say(f"RL: resuming at step {saved['step']} from {resume_from.name}")

        def snapshot(step: int) -> None:
            """Our side of a checkpoint: what the trainer's own checkpoint does not hold."""
            import json

            entries = []
            for e in pool.values():
                keep = [(r, s_) for r, s_ in zip(e["rewards"], e["steps"]) if s_ <= step]
                if keep:
                    entries.append(
                        {"cand": e["cand"].to_dict(), "rewards": [r for r, _ in keep], "steps": [s_ for _, s_ in keep]}
                    )
            (context.workdir / f"rl_state-{step}.json").write_text(
                json.dumps(
                    {
                        "step": step,
                        "rng": _lists(rng.getstate()),
                        "curve": [c for c in curve if c["step"] <= step],
                        "pool": entries,
                        "raced": [r.candidate.to_dict() for r in race_results],
                    }
                )
            )

        def race() -> None:
            fresh = [e["cand"] for e in _ranked(pool)[: cfg.race] if e["cand"].key() not in raced]
            if fresh:
                res = evaluator.score_many(fresh, task.dev)
                raced.update(c.key() for c in fresh)
                race_results.extend(res)
                curve[-1]["dev_best"] = round(max(r.mean for r in race_results), 4)

        from transformers import PrinterCallback, ProgressCallback, TrainerCallback

        class Race(TrainerCallback):
            def on_step_end(self, args, st, control, **kw):
                if st.global_step % cfg.eval_every == 0:
                    race()

            def on_save(self, args, st, control, **kw):
                if out_dir is not None:
                    snapshot(st.global_step)

        trainer.add_callback(Race())
        for cb in (PrinterCallback, ProgressCallback):  # the live view is ours (evaluator.say and progress)
            trainer.remove_callback(cb)
        state["t"] = time.perf_counter()
        try:
            with quiet_library_deprecations():
                trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except BudgetExhausted as e:
            stopped = str(e)
        except KeyboardInterrupt:
            if out_dir is not None and trainer.state.global_step > 0:  # keep what the finished steps learned
                trainer._save_checkpoint(trainer.model, trial=None)
                snapshot(trainer.state.global_step)
                evaluator.say(f"RL: checkpoint saved at step {trainer.state.global_step}")
            raise
        try:
            race()
        except BudgetExhausted as e:
            stopped = stopped or str(e)
        if not race_results:
            raise BudgetExhausted(stopped or "no written prompt was scored on dev")
        best = max(race_results, key=lambda r: r.selection)
        zero = sum(c["zero_spread"] for c in curve)
        notes = {
            "style": cfg.style,
            "trainer": cfg.trainer,
            "policy": policy_path,
            "curve": curve,
            "step_seconds": step_seconds,
            "prompts_written": len(pool),
            "zero_spread_steps": zero,
            "top_train": [
                {"prompt": e["cand"].describe(), "mean_reward": round(_mean(e), 4)} for e in _ranked(pool)[:10]
            ],
        }
        return Outcome(best.candidate, best.mean, stopped, notes)


def _mean(entry: dict) -> float:
    """A written prompt's mean train reward."""
    return sum(entry["rewards"]) / len(entry["rewards"])


def _ranked(pool: dict) -> list[dict]:
    return sorted(pool.values(), key=lambda e: -_mean(e))


def _lists(x):
    return [_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _tuple(x):
    return tuple(_tuple(v) for v in x) if isinstance(x, list) else x


def _last_checkpoint(workdir):
    """The trainer's newest checkpoint that has our state beside it."""
    import json

    steps = sorted(
        (int(p.name.split("-")[1]), p)
        for p in (workdir / "trainer").glob("checkpoint-*")
        if p.name.split("-")[1].isdigit() and (workdir / f"rl_state-{p.name.split('-')[1]}.json").exists()
    )
    if not steps:
        return None, None
    step, path = steps[-1]
    return path, json.loads((workdir / f"rl_state-{step}.json").read_text())


def _policy_path(spec: str, backend) -> str:
    if spec:
        return spec[3:] if spec.startswith("hf:") else spec
    if not backend.capabilities.local_model:
        raise PromptSearchError(
            f"The RL searcher trains a local policy model; the target '{backend.model_id}' is not "
            "one, so give one with -o policy=PATH (a local transformers model folder or hf:NAME)."
        )
    return backend.local_model().name_or_path


def _tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"  # TRL generates from left-padded prompts
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _text(completion) -> str:
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        completion = completion[-1]["content"] if completion else ""
    return " ".join(completion.strip().splitlines()[:1]).strip() if completion.strip() else ""


def _gap_reward(res: EvalResult, batch) -> float:
    """RLPrompt's gap reward, averaged over the minibatch: the correct label's probability
    minus the best wrong one's, weighted by whether the prediction is right."""
    import math

    gold = {e.id: e.label for e in batch}
    total = 0.0
    for row, ex_id in zip(res.label_logprobs, res.example_ids):
        p = {lab: math.exp(v) for lab, v in label_set_logprobs(row).items()}
        g = gold[ex_id]
        gap = p[g] - max(v for lab, v in p.items() if lab != g)
        total += gap * (CORRECT if gap > 0 else WRONG)
    return total / len(res.label_logprobs)


def _dataset(task: Task, cfg, rng: random.Random, tok):
    """TRL's `prompt` column: meta-prompts with different demos (instruction style), or one
    fixed input (tokens style), enough rows for every step."""
    from datasets import Dataset

    rows = []
    for _ in range(cfg.steps):
        if cfg.style == "tokens":
            text = "Prompt:"
        else:
            demos = rng.sample(task.train, min(cfg.demos, len(task.train)))
            text = META.format(
                demos="\n\n".join(
                    f"Input: {d.input}\nOutput: {d.answers[0] if not task.labels else d.label}" for d in demos
                )
            )
        chat = cfg.style == "instruction" and getattr(tok, "chat_template", None)
        rows.append({"prompt": [{"role": "user", "content": text}] if chat else text})
    return Dataset.from_list(rows)


def _trainer(cfg, policy_path: str, tok, reward, dataset, banned: list[int] | None, seed: int, out_dir=None):
    import dataclasses
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, TrainingArguments

    policy = AutoModelForCausalLM.from_pretrained(policy_path, dtype=torch.float32)
    # TRL defaults checkpointing on (on CPU it only costs time); transformers 5.x renamed the
    # argument and warns on the old name where the new one exists
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    ckpt = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    saving = (
        dict(save_strategy="steps", save_steps=cfg.checkpoint_every, save_total_limit=2)
        if out_dir
        else dict(save_strategy="no")
    )
    length = cfg.trigger_length if banned is not None else cfg.prompt_length
    common = dict(
        output_dir=str(out_dir or tempfile.mkdtemp(prefix="promptsearch-rl-")),
        **saving,
        per_device_train_batch_size=cfg.num_generations,
        num_generations=cfg.num_generations,
        max_completion_length=length,
        max_steps=cfg.steps,
        learning_rate=cfg.lr,
        temperature=cfg.temperature,
        logging_steps=1,
        report_to="none",
        bf16=False,
        use_cpu=not torch.cuda.is_available(),
        seed=seed,
        disable_tqdm=True,
        shuffle_dataset=False,
        **{ckpt: False},
    )
    gen: dict = {}
    if banned is not None:  # exactly trigger_length printable tokens
        gen = {"suppress_tokens": banned, "min_new_tokens": cfg.trigger_length}
    if gen:
        common["generation_kwargs"] = gen
    common.update(vllm_settings(cfg, banned is not None))
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    if cfg.trainer == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        args = GRPOConfig(**common, scale_rewards="group", beta=0.0)
        return GRPOTrainer(
            model=policy,
            reward_funcs=reward,
            args=args,
            train_dataset=dataset,
            processing_class=tok,
            peft_config=peft_config,
        )
    from trl import RLOOConfig, RLOOTrainer

    args = RLOOConfig(**common, beta=0.0)
    return RLOOTrainer(
        model=policy,
        reward_funcs=reward,
        args=args,
        train_dataset=dataset,
        processing_class=tok,
        peft_config=peft_config,
    )


def vllm_settings(cfg, tokens_style: bool) -> dict:
    """TRL's vLLM generation settings from the searcher's options ({} unless use_vllm)."""
    if not cfg.use_vllm:
        return {}
    import importlib.util

    from promptsearch.errors import PromptSearchError

    if importlib.util.find_spec("vllm") is None:
        raise PromptSearchError(
            "-o use_vllm=true needs vLLM, which is not installed: pip install vllm (on a CUDA "
            "machine), or leave use_vllm off."
        )
    if tokens_style:
        raise PromptSearchError(
            "-o use_vllm=true works with style=instruction: the tokens style bans tokens during "
            "generation, which TRL does not pass to vLLM."
        )
    out = {"use_vllm": True, "vllm_mode": cfg.vllm_mode}
    if cfg.vllm_mode == "server" and cfg.vllm_server_base_url:
        out["vllm_server_base_url"] = cfg.vllm_server_base_url
    if cfg.vllm_mode == "colocate":
        out["vllm_gpu_memory_utilization"] = cfg.vllm_gpu_memory_utilization
    return out
