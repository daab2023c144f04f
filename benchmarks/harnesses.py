"""Harnesses compared on the embedded model: zero-shot, few-shot, chain-of-thought and
self-consistency, on Instruction Induction `sum` and on SST-2 (RLPrompt split).

    python benchmarks/harnesses.py [--n-sum 50] [--n-sst2 100] [--cot-tokens 64]

Every condition runs against a fresh cache (unless --db), so the cost columns are what the
condition really costs. Writes benchmarks/out/harnesses.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-sum", type=int, default=50)
    ap.add_argument("--n-sst2", type=int, default=100)
    ap.add_argument("--cot-tokens", type=int, default=64)
    ap.add_argument("--db", help="reuse this cache (default: a fresh one)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "harnesses.json"))
    args = ap.parse_args()

    from promptsearch.backends import resolve_backend
    from promptsearch.candidates import Candidate
    from promptsearch.evaluation import Evaluator
    from promptsearch.store import CachedBackend, Store
    from promptsearch.tasks import load_task

    db = args.db or str(Path(tempfile.mkdtemp()) / "harness.db")
    backend = CachedBackend(resolve_backend("embedded"), Store(db))
    sum_task = load_task(str(DATA / "instruction_induction" / "induce" / "sum.json"))
    sst2 = load_task(str(DATA / "rlprompt" / "sst-2" / "16-42"))
    ct = args.cot_tokens
    conditions = [
        ("zero-shot", "zero-shot"),
        ("few-shot k=4", "fewshot:k=4"),
        ("CoT", f"cot:max_tokens={ct}"),
        ("CoT + answer call", f"cot:max_tokens={ct},answer_call=true"),
        ("CoT + SC n=5", f"cot:max_tokens={ct}+sc:n=5,temperature=0.7"),
        ("few-shot k=4 + CoT + SC n=5", f"fewshot:k=4+cot:max_tokens={ct}+sc:n=5,temperature=0.7"),
    ]
    setups = [
        ("sum", sum_task, sum_task.test[: args.n_sum], Candidate(instruction=sum_task.instructions[0], name="human-1")),
        ("sst-2", sst2, sst2.test[: args.n_sst2], Candidate(name="empty")),
    ]
    results = []
    for task_name, task, examples, cand in setups:
        for label, spec in conditions:
            ev = Evaluator(task, backend, harness=spec, chunk_size=1000)
            t0 = time.perf_counter()
            r = ev.score(cand, examples, split="eval")
            secs = time.perf_counter() - t0
            row = {
                "task": task_name,
                "n": r.n,
                "harness": label,
                "spec": spec,
                "prompt": cand.describe(),
                "score": round(r.mean, 4),
                "stderr": round(r.stderr, 4),
                "seconds": round(secs, 1),
                "calls": r.cost.calls,
                "tokens": r.cost.tokens,
                "cache_hits": r.cost.cache_hits,
                "extras": {k: round(v, 4) if isinstance(v, float) else v for k, v in r.extras.items()},
            }
            results.append(row)
            print(
                f"{task_name:6} {label:30} {r.mean:.3f} ± {r.stderr:.3f}  {secs:6.1f}s  {r.cost.calls} calls  "
                f"{r.cost.tokens} tok  {row['extras']}",
                file=sys.stderr,
                flush=True,
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
