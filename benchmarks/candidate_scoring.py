"""Scoring many trigger candidates at once, and one AutoPrompt iteration vs nanoGCG.

Part 1 (`scoring`): 64 random 5-token triggers x 16 SST-2 examples (RLPrompt split 16-42,
train), the trigger after the input ("Review: {input}{trigger}\\nSentiment:"), label words
negative/positive, the embedded model. The same requests are scored with the HF backend's
per-example prefix sharing (`clusters`: each input's KV run once, every candidate pays only for
its trigger and the answer lead), with only the prefix common to a whole batch shared
(`batch`: what the backend did before), and with nothing shared (`none`: every row run in
full, as a plain evaluator does), in alternating order, each from an empty prefix cache; we report
the time, the token positions the model ran
(padding included) and the naive count (every row run in full), and check that the two
paths give the same log-probabilities.

Part 1b (`soft`): dev scorings of prompt-tuned soft prompts, their virtual tokens run in front
of every row or their keys and values run once per scoring and reused by every batch.

Part 2 (`iteration`): one full GCG iteration (gradient wrt the one-hot trigger, sampling,
scoring every candidate) on a one-example objective, ours (AutoPrompt's code path through
the evaluator and its cache) vs PyPI `nanogcg` with the same model, trigger length, top-k
and search width. nanoGCG optimises a string for one (prompt, target) pair; the target
here is the gold label word.

    python benchmarks/candidate_scoring.py [--repeats 2] [--skip nanogcg]

nanogcg declares transformers<=4.47.1, so it runs in a separate interpreter
(`--nanogcg-python`, default this one; it reports the error if nanogcg fails there):
    python -m venv /tmp/ngenv && /tmp/ngenv/bin/pip install torch==2.13.0 transformers==4.47.1 nanogcg
    python benchmarks/candidate_scoring.py --nanogcg-python /tmp/ngenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "rlprompt" / "sst-2" / "16-42"
TEMPLATE = "Review: {input}{trigger}\nSentiment:"


def load():
    from promptsearch.backends.embedded import prepare
    from promptsearch.backends.hf import HFBackend
    from promptsearch.settings import get_settings
    from promptsearch.tasks.loaders import load_task

    folder = prepare(get_settings().model_dir)
    backend = HFBackend(str(folder), model_id="bench:smollm2")
    _ = backend.model  # loaded outside every timing
    return backend, load_task(str(SST2))


def random_triggers(backend, task, n: int, length: int, seed: int = 0) -> list[tuple[int, ...]]:
    from promptsearch.searchers.autoprompt import _allowed_tokens, _stable

    tok = backend.tokenizer
    ok = _allowed_tokens(tok, task).nonzero().flatten().tolist()
    rng = random.Random(seed)
    out: list[tuple[int, ...]] = []
    while len(out) < n:
        t = tuple(rng.choice(ok) for _ in range(length))
        if _stable(tok, t) and t not in out:
            out.append(t)
    return out


def scoring(backend, task, repeats: int) -> dict:
    from promptsearch.backends.base import LoglikRequest
    from promptsearch.candidates import Candidate
    from promptsearch.evaluation.render import continuation, render, task_for

    examples = task.train[:16]
    cands = [Candidate(trigger=t, template=TEMPLATE) for t in random_triggers(backend, task, 64, 5)]
    reqs = []
    for c in cands:
        t = task_for(task, c)
        for ex in examples:
            p = render(t, c, ex, [])
            reqs += [LoglikRequest(p, continuation(p, w)) for w in t.labels.values()]
    naive = sum(len(backend.split_context(r)[0]) for r in reqs[::2])  # both labels are one token: one row per prompt
    modes = ("clusters", "per-cluster", "batch", "none")
    runs: dict[str, list] = {m: [] for m in modes}
    results = {}
    for mode in modes:  # warm-up (first calls at new shapes are slow), untimed
        backend.sharing = mode
        backend.loglikelihood(reqs[:128])
    for rep in range(repeats):
        for mode in modes if rep % 2 == 0 else modes[::-1]:
            backend.sharing = mode
            backend._prefix_cache.clear()
            backend.tokens_run = 0
            t0 = time.perf_counter()
            res = backend.loglikelihood(reqs)
            runs[mode].append((time.perf_counter() - t0, backend.tokens_run))
            results[mode] = [r.logprob for r in res]
    backend.sharing = "clusters"
    best = {m: min(v) for m, v in runs.items()}
    out = {"candidates": len(cands), "examples": len(examples), "requests": len(reqs), "naive_tokens": naive}
    for m in modes:
        out[m] = {
            "seconds": [round(s, 2) for s, _ in runs[m]],
            "tokens_run": best[m][1],
            "clusters_speedup": round(best[m][0] / best["clusters"][0], 2),
            "speedup_over_none": round(best["none"][0] / best[m][0], 2),
            "max_abs_logprob_diff_vs_clusters": max(abs(a - b) for a, b in zip(results[m], results["clusters"])),
        }
    return out


def soft_scoring(backend, task, repeats: int, n_virtual: int = 8, prompts: int = 8) -> dict:
    """Dev scorings of prompt-tuned soft prompts (random vectors at the embeddings' scale,
    `n_virtual` tokens each), as the soft searcher's dev checks run them: the virtual tokens
    run in front of every row (`none`) or their keys and values run once per scoring and
    reused by every batch (`clusters`, now)."""
    import torch

    from promptsearch.backends.base import LoglikRequest, SoftPrompt
    from promptsearch.candidates import Candidate
    from promptsearch.evaluation.render import continuation, render

    emb = backend.model.get_input_embeddings().weight
    gen = torch.Generator().manual_seed(0)
    sps = [
        SoftPrompt(vectors=emb[torch.randint(0, emb.shape[0], (n_virtual,), generator=gen)].detach().float().cpu())
        for _ in range(prompts)
    ]
    reqs = []
    for ex in task.dev:
        p = render(task, Candidate(), ex, [])
        reqs += [LoglikRequest(p, continuation(p, w)) for w in task.labels.values()]
    runs: dict[str, list] = {m: [] for m in ("clusters", "none")}
    results: dict[str, list] = {}
    for mode in runs:  # warm-up, untimed
        backend.sharing = mode
        backend.loglikelihood(reqs[:16], soft_prompt=sps[0])
    for rep in range(repeats):
        for mode in ("clusters", "none") if rep % 2 == 0 else ("none", "clusters"):
            backend.sharing, backend.tokens_run, backend._soft_kv_memo = mode, 0, None
            t0 = time.perf_counter()
            res = [r.logprob for sp in sps for r in backend.loglikelihood(reqs, soft_prompt=sp)]
            runs[mode].append((time.perf_counter() - t0, backend.tokens_run))
            results[mode] = res
    backend.sharing = "clusters"
    best = {m: min(v) for m, v in runs.items()}
    return {
        "soft_prompts": prompts,
        "virtual_tokens": n_virtual,
        "requests_per_scoring": len(reqs),
        **{
            m: {
                "seconds": [round(s, 2) for s, _ in runs[m]],
                "tokens_run": best[m][1],
                "speedup_over_none": round(best["none"][0] / best[m][0], 2),
            }
            for m in runs
        },
        "max_abs_logprob_diff": max(abs(a - b) for a, b in zip(results["clusters"], results["none"])),
    }


def our_iteration(backend, task, width: int, topk: int, length: int, steps: int) -> dict:
    """AutoPrompt's iteration as `search` runs it, on one example, through a cached evaluator."""
    from promptsearch.candidates import Candidate
    from promptsearch.evaluation.evaluator import Evaluator
    from promptsearch.searchers.autoprompt import (
        AutoPromptSearcher,
        _allowed_tokens,
        _cand,
        _init_trigger,
        _losses,
        _sample,
        _stable,
        _trigger_grad,
    )
    from promptsearch.store import CachedBackend, Store

    tok = backend.tokenizer
    cfg = AutoPromptSearcher.Config(length=length, topk=topk, search_width=width)
    ex = task.train[0]
    with tempfile.TemporaryDirectory() as d:
        ev = Evaluator(task, CachedBackend(backend, Store(Path(d) / "it.db")))
        proto = Candidate(template=TEMPLATE)
        allowed = _allowed_tokens(tok, task)
        trigger = _init_trigger(tok, " x", length)
        rng = random.Random(0)
        times, losses = [], []
        for it in range(steps):
            backend._prefix_cache.clear()
            t0 = time.perf_counter()
            grad = _trigger_grad(backend, task, _cand(proto, trigger, tok, it), [ex])
            pool = [trigger] + [
                c for c in dict.fromkeys(_sample(grad, trigger, allowed, cfg, rng)) if c != trigger and _stable(tok, c)
            ]
            ls = _losses(ev, task, [_cand(proto, c, tok, it) for c in pool], [ex])
            k = min(range(len(pool)), key=ls.__getitem__)
            trigger = pool[k]
            times.append(time.perf_counter() - t0)
            losses.append(ls[k])
    return {
        "seconds_per_iteration": [round(t, 3) for t in times],
        "losses": [round(x, 4) for x in losses],
        "trigger": tok.decode(list(trigger)),
    }


NANOGCG = r"""
import json, sys, time
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
try:
    import nanogcg
    from nanogcg import GCGConfig
except ImportError as e:
    print(json.dumps({"error": f"nanogcg is not installed here ({e}); pip install nanogcg"})); sys.exit()
folder, prompt, target, width, topk, length, steps = sys.argv[1:]
torch.set_num_threads(torch.get_num_threads())
model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
try:
    tok = AutoTokenizer.from_pretrained(folder)
except ValueError:  # a tokenizer saved by transformers 5 ("TokenizersBackend"): load its tokenizer.json
    import pathlib
    from transformers import PreTrainedTokenizerFast
    conf = json.loads((pathlib.Path(folder) / "tokenizer_config.json").read_text())
    tok = PreTrainedTokenizerFast(tokenizer_file=str(pathlib.Path(folder) / "tokenizer.json"),
                                  bos_token=conf.get("bos_token"), eos_token=conf.get("eos_token"))
    jinja = pathlib.Path(folder) / "chat_template.jinja"
    tok.chat_template = jinja.read_text() if jinja.exists() else conf.get("chat_template")
cfg = GCGConfig(num_steps=int(steps), search_width=int(width), topk=int(topk), seed=0, verbosity="WARNING",
                optim_str_init=" ".join(["x"] * int(length)), use_prefix_cache=True)
t0 = time.perf_counter()
try:
    res = nanogcg.run(model, tok, prompt, target, cfg)
except Exception as e:
    print(json.dumps({"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}",
                      "transformers": transformers.__version__})); sys.exit()
total = time.perf_counter() - t0
print(json.dumps({"seconds_total": round(total, 2), "steps": int(steps),
                  "seconds_per_iteration": round(total / int(steps), 3),
                  "losses": [round(x, 4) for x in res.losses], "best_string": res.best_string,
                  "transformers": transformers.__version__, "torch": torch.__version__}))
"""


def nanogcg_iteration(backend, task, width: int, topk: int, length: int, steps: int, python: str) -> dict:
    """nanoGCG in its own interpreter (it pins transformers<=4.47.1): the same model folder,
    the first train example's prompt with the string after the input, the gold label as target."""
    import subprocess

    ex = task.train[0]
    prompt = TEMPLATE.replace("{input}", ex.input).replace("{trigger}", "{optim_str}")
    out = subprocess.run(
        [
            python,
            "-c",
            NANOGCG,
            backend.name_or_path,
            prompt,
            " " + ex.label,
            str(width),
            str(topk),
            str(length),
            str(steps),
        ],
        capture_output=True,
        text=True,
    )
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    try:
        return {"python": python, **json.loads(line)}
    except json.JSONDecodeError:
        return {"python": python, "error": (out.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="iterations timed in part 2")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--topk", type=int, default=64)
    ap.add_argument(
        "--nanogcg-python",
        default=sys.executable,
        help="interpreter with nanogcg installed (it needs transformers<=4.47.1; a separate venv)",
    )
    ap.add_argument("--skip", nargs="*", default=[], choices=["scoring", "soft", "iteration", "nanogcg"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "candidate_scoring.json")
    args = ap.parse_args()
    import torch

    torch.set_grad_enabled(True)
    backend, task = load()
    out: dict = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    if "scoring" not in args.skip:
        out["scoring"] = scoring(backend, task, args.repeats)
        print(json.dumps(out["scoring"], indent=1), flush=True)
    if "soft" not in args.skip:
        out["soft"] = soft_scoring(backend, task, args.repeats)
        print(json.dumps(out["soft"], indent=1), flush=True)
    if "iteration" not in args.skip:
        out["ours"] = our_iteration(backend, task, args.width, args.topk, 5, args.steps)
        print("ours", json.dumps(out["ours"]), flush=True)
    if "nanogcg" not in args.skip:
        out["nanogcg"] = nanogcg_iteration(backend, task, args.width, args.topk, 5, args.steps, args.nanogcg_python)
        print("nanogcg", json.dumps(out["nanogcg"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    args.out.write_text(json.dumps({**old, **out}, indent=1))  # parts skipped keep their last figures
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
