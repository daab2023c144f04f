"""Label scores through a chat server: generate-and-parse against first-token log-probabilities
(and those calibrated), beside the in-process log-likelihood scores of the same prompt.

The server is llama.cpp's (llama-cpp-python[server]) on the embedded model's own GGUF file
(SmolLM2-135M-Instruct Q4_1), started on 127.0.0.1; the target is `openai:smollm2` with
`scoring=generate` or `scoring=logprobs`. In-process rows score the same instruction on the
embedded model (its fp32 de-quantisation of that file) by label log-likelihood. Test sets:
SST-2 16-42 (a stratified sample, `--sst2-n`, seed 0) and TREC 16-42 (all 500).

    python benchmarks/api_scoring.py --llama-python /tmp/lcpenv/bin/python   # resumes from results/
    python benchmarks/api_scoring.py --table

Every row is written to benchmarks/results/api_scoring.json as it finishes; model answers
are cached in benchmarks/out/api_scoring.db, so a rerun is free.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the server helpers the tests use
DATA = ROOT.parent / "shared" / "data" / "rlprompt"
RESULTS = ROOT / "benchmarks" / "results" / "api_scoring.json"
DB = ROOT / "benchmarks" / "out" / "api_scoring.db"
MANUAL = {
    "sst-2": "Is the following movie review positive or negative?",
    "trec": "What kind of answer does the following question ask for?",
}
ROWS = {  # name -> (served?, scoring, harness)
    "served, generate and parse": (True, "generate", "zero-shot"),
    "served, first-token logprobs": (True, "logprobs", "zero-shot"),
    "served, logprobs + calibration": (True, "logprobs", "calibrate"),
    "in-process log-likelihood": (False, None, "zero-shot"),
    "in-process + calibration": (False, None, "calibrate"),
    # the served prompt, chat template and all, scored in-process by label log-likelihood
    # (label words in both cases): what the server's own arithmetic is measured against
    "in-process, chat-formatted": (False, "chat", "zero-shot"),
    "in-process, chat-formatted + calibration": (False, "chat", "calibrate"),
}


def chat_formatted(task, instruction: str):
    """The task as the chat server sees it: the user message (instruction, the labels named,
    the example) inside the embedded model's chat template, ending where the answer starts;
    label words in lower and title case. Scored with no instruction of its own."""
    from transformers import AutoTokenizer

    from promptsearch.backends.embedded import prepare
    from promptsearch.evaluation.render import options_line
    from promptsearch.settings import get_settings
    from promptsearch.tasks.base import label_words

    tok = AutoTokenizer.from_pretrained(str(prepare(get_settings().model_dir)))
    user = f"{instruction}\n{options_line(task)}\n\n{task.template}"
    template = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    labels = {lab: [w, w[:1].upper() + w[1:]] for lab, ws in task.labels.items() for w in label_words(ws)[:1]}
    return replace(task, template=template, labels=labels)


def task_for(dataset: str, sst2_n: int):
    """The 16-42 split; SST-2's test as a stratified sample (equal shares per label, seed 0),
    drawn as the sweep spec's `test_sample` draws it."""
    from promptsearch.sweep.spec import resolve_task

    spec = {"task": str(DATA / dataset / "16-42")}
    if dataset == "sst-2":
        spec["test_sample"] = sst2_n
    return resolve_task(json.dumps(spec))


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    tmp.replace(RESULTS)


def run(args) -> None:
    from promptsearch.backends.openai_api import OpenAIBackend
    from promptsearch.candidates import Candidate
    from promptsearch.runner import run_eval
    from servers import free_port, start_llama_cpp, stop

    results = load()
    todo = [(d, r) for d in args.datasets for r in ROWS if f"{d}/{r}" not in results]
    print(f"{len(todo)} rows to score ({len(results)} done)", flush=True)
    if not todo:
        return
    DB.parent.mkdir(parents=True, exist_ok=True)
    proc = None
    if any(ROWS[r][0] for _, r in todo):
        port = free_port()
        proc = start_llama_cpp(args.llama_python, port, Path(tempfile.mkdtemp()) / "server.log", threads=args.threads)
        url = f"http://127.0.0.1:{port}/v1"
    try:
        for dataset, name in todo:
            served, scoring, harness = ROWS[name]
            task = task_for(dataset, args.sst2_n)
            cand = Candidate(instruction=MANUAL[dataset], name="manual")
            if scoring == "chat":
                task, cand = chat_formatted(task, MANUAL[dataset]), Candidate(name="manual, chat-formatted")
            model = (
                OpenAIBackend("smollm2", base_url=url, scoring=scoring, concurrency=1, timeout=120)
                if served
                else "embedded"
            )
            t0 = time.time()
            res, doc = run_eval(task, cand, model=model, harness=harness, db=str(DB))
            row = {
                "accuracy": round(res.mean, 4),
                "stderr": round(res.stderr, 4),
                "n": res.n,
                "scoring": doc["model"].get("scoring"),
                "calls": doc["cost"]["calls"],
                "wall_seconds": round(time.time() - t0, 1),
                "scores": res.scores,
                "extras": {k: v for k, v in res.extras.items() if k != "calibration"},
            }
            if res.extras.get("calibration"):
                row["calibration"] = res.extras["calibration"]
            results = load()
            results[f"{dataset}/{name}"] = row
            save(results)
            print(f"{dataset}/{name}: {row['accuracy']:.3f} (n={row['n']}), {row['wall_seconds']:.0f} s", flush=True)
    finally:
        if proc is not None:
            stop(proc)


def table(results: dict) -> str:
    """Rows with their paired bootstrap difference to in-process scoring of the raw task
    template and of the served prompt itself (calibrated rows against calibrated rows)."""
    from promptsearch.evaluation.stats import paired_bootstrap

    def vs(key: str, other: str) -> str:
        a, b = results.get(key), results.get(other)
        if not a or not b or len(a["scores"]) != len(b["scores"]):
            return ""
        d = paired_bootstrap(a["scores"], b["scores"])
        return f"{d.diff:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]"

    lines = [
        "| dataset | row | accuracy (95%) | calls | label scores that were bounds | examples with a shared first "
        "token | unparsed | minus in-process, task template | minus in-process, same chat prompt |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for dataset in sorted({k.split("/", 1)[0] for k in results}):
        for name in ROWS:
            key = f"{dataset}/{name}"
            r = results.get(key)
            if r is None:
                continue
            ft = r["extras"].get("first_token") or {}
            cal = " + calibration" if "calibration" in name else ""
            raw = "in-process + calibration" if cal else "in-process log-likelihood"
            chat = "in-process, chat-formatted" + cal
            served = name.startswith("served") and "logprobs" in name
            lines.append(
                f"| {dataset} | {name} | {r['accuracy']:.3f} ± {1.96 * r['stderr']:.3f} | {r['calls']} | "
                f"{ft.get('outside_top_k', '')} | {ft.get('shared_first_token', '')} | "
                f"{r['extras'].get('unparsed_examples', '')} | "
                f"{vs(key, f'{dataset}/{raw}') if served else ''} | {vs(key, f'{dataset}/{chat}') if served else ''} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-python", help="a Python with llama-cpp-python[server] installed")
    ap.add_argument("--datasets", nargs="+", default=list(MANUAL), choices=list(MANUAL))
    ap.add_argument("--sst2-n", type=int, default=500, help="SST-2 test examples (stratified, seed 0)")
    ap.add_argument("--threads", type=int, default=1, help="the server's threads")
    ap.add_argument("--table", action="store_true", help="print the table from the results file and exit")
    args = ap.parse_args()
    if args.table:
        print(table(load()))
        return
    if not args.llama_python:
        ap.error("--llama-python is needed to start the server (see benchmarks/README.md)")
    try:
        import torch

        torch.set_num_threads(int(os.environ.get("PROMPTSEARCH_THREADS", "1")))
    except ImportError:
        pass
    run(args)


if __name__ == "__main__":
    sys.exit(main())
