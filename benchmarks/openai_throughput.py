"""Evaluation throughput through an OpenAI-compatible server at concurrency 1, 4 and 16.

Starts `transformers serve` on the embedded model (127.0.0.1, CPU unless --device says
otherwise), then scores one prompt on the first N sentiment test examples through
`openai:<model>` with a fresh cache for each concurrency, so every request goes to the
server. Greedy answers must not depend on concurrency: the script checks that every run
predicts the same labels. For reference it also times the in-process embedded backend.

    python benchmarks/openai_throughput.py [--n 64] [--concurrency 1,4,16] [--cb] [--device cpu]

`--cb` starts the server with continuous batching (paged attention). Results go to
benchmarks/results/openai_throughput[-cb].json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the server helpers the tests use

PROMPT = "Is this review positive or negative?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--cb", action="store_true", help="server with continuous batching")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--api", default="chat", choices=["chat", "completions"])
    args = ap.parse_args()

    from promptsearch.backends.embedded import prepare
    from promptsearch.candidates import Candidate
    from promptsearch.runner import run_eval
    from promptsearch.settings import configure, get_settings
    from servers import free_port, start_transformers_serve, stop

    folder = prepare(get_settings().model_dir)
    cand = Candidate(instruction=PROMPT, name="manual")
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="ps-throughput-"))
    extra = ["--continuous-batching"] if args.cb else []
    proc = start_transformers_serve(folder, port, tmp / "serve.log", extra_args=extra, device=args.device)
    rows, preds = [], {}
    try:
        model = f"openai:{folder},api={args.api},base_url=http://127.0.0.1:{port}/v1"
        # one warm-up request so model loading is not timed
        configure(concurrency=1)
        run_eval("sentiment", cand, model=model, split="train", limit=1, db=str(tmp / "warm.db"))
        for c in [int(x) for x in args.concurrency.split(",")]:
            configure(concurrency=c)
            t0 = time.perf_counter()
            res, doc = run_eval("sentiment", cand, model=model, split="test", limit=args.n, db=str(tmp / f"c{c}.db"))
            wall = time.perf_counter() - t0
            preds[c] = res.predictions
            cost = doc["cost"]
            rows.append(
                {
                    "concurrency": c,
                    "requests": cost["calls"],
                    "seconds": round(wall, 2),
                    "requests_per_s": round(cost["calls"] / wall, 2),
                    "tokens": cost["tokens"],
                    "tokens_per_s": round(cost["tokens"] / wall, 1),
                    "accuracy": round(res.mean, 4),
                }
            )
            print(
                f"concurrency {c:>2}: {cost['calls']} requests in {wall:.1f} s = {cost['calls'] / wall:.2f} req/s, "
                f"{cost['tokens'] / wall:.0f} tok/s, accuracy {res.mean:.3f}",
                flush=True,
            )
    finally:
        stop(proc)
        configure()
    same = all(p == preds[min(preds)] for p in preds.values())
    print(f"predictions identical across concurrency: {same}")

    # reference: the same scoring in-process (batched generation, no HTTP)
    from promptsearch.evaluation.harness import parse_harness

    t0 = time.perf_counter()
    res, doc = run_eval(
        "sentiment",
        cand,
        model="embedded",
        split="test",
        limit=args.n,
        db=str(tmp / "local.db"),
        harness=parse_harness("zero-shot"),
    )
    local = {
        "seconds": round(time.perf_counter() - t0, 2),
        "requests": doc["cost"]["calls"],
        "accuracy": round(res.mean, 4),
        "note": "in-process embedded backend, log-likelihood classification",
    }
    print(f"in-process embedded backend: {local['requests']} requests in {local['seconds']:.1f} s")
    out = {
        "n": args.n,
        "api": args.api,
        "device": args.device,
        "continuous_batching": args.cb,
        "rows": rows,
        "predictions_identical": same,
        "local": local,
        "platform": platform.platform(),
        "cpus": __import__("os").cpu_count(),
    }
    dest = (
        HERE
        / "results"
        / f"openai_throughput{'-cb' if args.cb else ''}{'-' + args.device if args.device != 'cpu' else ''}.json"
    )
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
