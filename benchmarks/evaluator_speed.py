"""Evaluator speed on SST-2 (RLPrompt split) with the embedded model.

Side by side, on the same examples, prompt and model:
  ours-cold  promptsearch's evaluator, empty cache (model already loaded)
  ours-warm  the same evaluation again: every answer from the SQLite cache
  plain      a plain transformers loop: one example at a time, full logits
  lm-eval    lm-evaluation-harness's `hf` backend on a local JSONL task (offline)
and the compute bound: non-embedding FLOPs of the tokens over measured matmul GFLOP/s.
Run once with the short template and once with a ~40-token instruction in front.

    python benchmarks/evaluator_speed.py [--n 400] [--lm-eval-batch 32] [--out benchmarks/out/evaluator_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "rlprompt" / "sst-2" / "16-42"
LONG_INSTRUCTION = (
    "Read the movie review below carefully and decide whether the critic's overall opinion of the film is "
    "positive or negative. Weigh the tone, the choice of words and any sarcasm, then answer with one word."
)
LABELS = {"negative": "negative", "positive": "positive"}


def matmul_gflops(seconds: float = 3.0) -> float:
    """Sustained fp32 matmul rate at the model's shapes (hidden 576 -> MLP 1536)."""
    import torch

    a, b = torch.randn(2048, 576), torch.randn(576, 1536)
    for _ in range(3):
        a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * 2048 * 576 * 1536 * n / (time.perf_counter() - t0) / 1e9


def non_embedding_params(model) -> int:
    emb = model.get_input_embeddings().weight.numel()
    total = sum(p.numel() for p in model.parameters())  # tied lm_head is counted once
    return total - emb


def run_ours(task, examples, cand, folder, db_path):
    from promptsearch.backends.hf import HFBackend
    from promptsearch.evaluation import Evaluator
    from promptsearch.store import CachedBackend, Store

    backend = HFBackend(str(folder), model_id="bench:smollm2")
    _ = backend.model  # load outside the timing: every method gets a loaded model
    store = Store(db_path)
    t0 = time.perf_counter()
    cold = Evaluator(task, CachedBackend(backend, store), chunk_size=10_000).score(cand, examples, split="eval")
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = Evaluator(task, CachedBackend(backend, Store(db_path)), chunk_size=10_000).score(
        cand, examples, split="eval"
    )
    t_warm = time.perf_counter() - t0
    assert warm.cost.calls == 0 and warm.predictions == cold.predictions
    return cold, t_cold, t_warm


def run_plain(model, tok, prompts):
    """One example at a time: one forward pass over the context with full logits, reading
    each label's token there (an extra pass per label only if a label is several tokens)."""
    import torch

    preds, t0 = [], time.perf_counter()
    with torch.inference_mode():
        for ctx in prompts:
            c = tok(ctx, add_special_tokens=False).input_ids
            last = torch.log_softmax(model(torch.tensor([c])).logits[0, -1].float(), -1)
            scores = {}
            for lab, word in LABELS.items():
                cont = tok(ctx + " " + word, add_special_tokens=False).input_ids[len(c) :]
                if len(cont) == 1:
                    scores[lab] = last[cont[0]].item()
                else:
                    lsm = torch.log_softmax(model(torch.tensor([c + cont])).logits[0].float(), -1)
                    scores[lab] = sum(lsm[len(c) - 1 + j, t].item() for j, t in enumerate(cont))
            preds.append(max(scores, key=scores.get))
    return preds, time.perf_counter() - t0


def run_lm_eval(folder, examples, instruction, batch_size):
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tmp = Path(tempfile.mkdtemp())
    data = tmp / "sst2.jsonl"
    with data.open("w") as f:
        for e in examples:
            f.write(json.dumps({"sentence": e.input, "label": 0 if e.label == "negative" else 1}) + "\n")
    prefix = (instruction.replace("{", "{{ '{' }}") + "\\n\\n") if instruction else ""
    (tmp / "task.yaml").write_text(
        "task: sst2_speed\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        f'doc_to_text: "{prefix}Review: {{{{sentence}}}}\\nSentiment:"\n'
        "doc_to_target: label\n"
        "doc_to_choice: ['negative', 'positive']\n"
        "metric_list:\n  - metric: acc\n"
    )
    lm = HFLM(pretrained=str(folder), device="cpu", dtype="float32", batch_size=batch_size)
    t0 = time.perf_counter()
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=["sst2_speed"],
        task_manager=TaskManager(include_path=str(tmp)),
        bootstrap_iters=0,
        log_samples=False,
        verbosity="ERROR",
    )
    secs = time.perf_counter() - t0
    return out["results"]["sst2_speed"]["acc,none"], secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--lm-eval-batch", type=int, default=32)
    ap.add_argument("--skip", nargs="*", default=[], choices=["plain", "lm-eval"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "evaluator_speed.json"))
    args = ap.parse_args()

    import torch

    from promptsearch.backends.embedded import prepare
    from promptsearch.candidates import Candidate
    from promptsearch.evaluation.render import render
    from promptsearch.settings import get_settings
    from promptsearch.tasks import load_task

    folder = prepare(get_settings().model_dir)
    task = load_task(str(SST2))
    task.template, task.labels = "Review: {input}\nSentiment:", LABELS
    examples = task.test[: args.n]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    gflops = matmul_gflops()
    n_params = non_embedding_params(model)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul {gflops:.1f} GFLOP/s; "
        f"non-embedding params {n_params / 1e6:.1f} M",
        file=sys.stderr,
    )
    results = {
        "n": len(examples),
        "matmul_gflops": round(gflops, 1),
        "non_embedding_params": n_params,
        "threads": torch.get_num_threads(),
        "settings": {},
    }
    for name, instruction in (("short", ""), ("long", LONG_INSTRUCTION)):
        cand = Candidate(instruction=instruction, name=name)
        prompts = [render(task, cand, e, []) for e in examples]
        tokens = sum(len(tok(p, add_special_tokens=False).input_ids) + 1 for p in prompts)
        instr_tokens = len(tok(instruction, add_special_tokens=False).input_ids) if instruction else 0
        bound = 2 * n_params * tokens / (gflops * 1e9)
        row = {"instruction_tokens": instr_tokens, "tokens": tokens, "compute_bound_s": round(bound, 2)}
        with tempfile.TemporaryDirectory() as d:
            res, t_cold, t_warm = run_ours(task, examples, cand, folder, Path(d) / "bench.db")
        row["ours"] = {
            "acc": round(res.mean, 4),
            "cold_s": round(t_cold, 2),
            "warm_s": round(t_warm, 3),
            "cold_ex_per_s": round(len(examples) / t_cold, 1),
            "cold_tok_per_s": round(tokens / t_cold),
            "warm_ex_per_s": round(len(examples) / t_warm, 1),
        }
        print(f"[{name}] ours cold {t_cold:.1f}s warm {t_warm:.3f}s acc {res.mean:.4f}", file=sys.stderr)
        if "plain" not in args.skip:
            preds, t_plain = run_plain(model, tok, prompts)
            agree = sum(p == q for p, q in zip(preds, res.predictions)) / len(preds)
            acc = sum(p == e.label for p, e in zip(preds, examples)) / len(examples)
            row["plain"] = {
                "acc": round(acc, 4),
                "s": round(t_plain, 2),
                "ex_per_s": round(len(examples) / t_plain, 1),
                "prediction_agreement_with_ours": round(agree, 4),
            }
            print(f"[{name}] plain {t_plain:.1f}s acc {acc:.4f} agreement {agree:.4f}", file=sys.stderr)
        if "lm-eval" not in args.skip:
            acc, t_lm = run_lm_eval(folder, examples, instruction, args.lm_eval_batch)
            row["lm_eval"] = {
                "acc": round(acc, 4),
                "s": round(t_lm, 2),
                "ex_per_s": round(len(examples) / t_lm, 1),
                "batch_size": args.lm_eval_batch,
            }
            print(f"[{name}] lm-eval {t_lm:.1f}s acc {acc:.4f}", file=sys.stderr)
        results["settings"][name] = row
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
