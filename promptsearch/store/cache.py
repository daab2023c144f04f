"""The request cache, wrapped around any backend, so every searcher and harness gets it."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from typing import Sequence

from promptsearch.backends.base import (
    GenRequest, GenResult, LoglikRequest, LoglikResult, SoftPrompt, prompt_key,
)
from promptsearch.cost import Usage
from promptsearch.store.db import Store


def request_key(identity: dict, kind: str, payload: dict) -> str:
    blob = json.dumps({"id": identity, "kind": kind, **payload}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedBackend:
    """Same contract as the wrapped backend. Answers are committed per call, so an
    interrupted run keeps everything answered before the interrupt."""

    def __init__(self, inner, store: Store):
        self.inner = inner
        self.store = store
        self.usage = Usage()

    kind = property(lambda self: self.inner.kind)
    model_id = property(lambda self: self.inner.model_id)
    can_loglikelihood = property(lambda self: self.inner.can_loglikelihood)
    can_generate = property(lambda self: self.inner.can_generate)

    def identity(self) -> dict:
        return self.inner.identity()

    def _run(self, kind: str, requests: Sequence, payloads: list[dict], call, decode):
        ident = self.identity()
        keys = [request_key(ident, kind, p) for p in payloads]
        found = self.store.cache_get(list(dict.fromkeys(keys)))
        results = [None] * len(requests)
        todo: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            if k in found:
                results[i] = decode(found[k])
                self.usage.cache_hits += 1
            else:
                todo.setdefault(k, []).append(i)
        if todo:
            first = [idx[0] for idx in todo.values()]
            t0 = time.perf_counter()
            answers = call([requests[i] for i in first])
            self.usage.seconds += time.perf_counter() - t0
            rows = []
            for (key, idxs), ans in zip(todo.items(), answers):
                for i in idxs:
                    results[i] = ans
                self.usage.calls += 1
                self.usage.tokens += ans.n_tokens
                rows.append(dict(key=key, backend=self.model_id, kind=kind,
                                 request=json.dumps(payloads[idxs[0]], ensure_ascii=False),
                                 response=json.dumps(asdict(ans)), n_tokens=ans.n_tokens))
            self.store.cache_put(rows)
        return results

    def loglikelihood(self, requests: Sequence[LoglikRequest], soft_prompt: SoftPrompt | None = None) -> list[LoglikResult]:
        soft = soft_prompt.fingerprint() if soft_prompt is not None else None
        payloads = [{"context": prompt_key(r.context), "continuation": r.continuation, "soft_prompt": soft} for r in requests]
        return self._run("loglik", requests, payloads,
                         lambda rs: self.inner.loglikelihood(rs, soft_prompt=soft_prompt) if soft_prompt is not None else self.inner.loglikelihood(rs),
                         lambda d: LoglikResult(**d))

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        payloads = [{"prompt": prompt_key(r.prompt), "max_new_tokens": r.max_new_tokens, "temperature": r.temperature,
                     "top_p": r.top_p, "stop": list(r.stop),
                     # greedy decoding ignores seed and sample index: one entry serves them all
                     "sample_index": r.sample_index if r.temperature > 0 else 0,
                     "seed": r.seed if r.temperature > 0 else 0} for r in requests]
        return self._run("gen", requests, payloads, self.inner.generate, lambda d: GenResult(**d))

    def __getattr__(self, name):  # model, tokenizer, encode_prompt ... for gradient searchers
        return getattr(self.inner, name)
