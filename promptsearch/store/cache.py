"""The request cache, wrapped around any backend, so every searcher and harness gets it."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from typing import Sequence

from promptsearch.backends.base import (
    Backend,
    EmbedResult,
    FirstTokenRequest,
    FirstTokenResult,
    GenRequest,
    GenResult,
    LoglikRequest,
    LoglikResult,
    SoftPrompt,
    no_embeddings,
    prompt_key,
)
from promptsearch.cost import Usage
from promptsearch.store.db import Store


def request_key(identity: dict, kind: str, payload: dict) -> str:
    blob = json.dumps({"id": identity, "kind": kind, **payload}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedBackend(Backend):
    """Same contract as the wrapped backend (its capabilities, price and local model are the
    wrapped backend's), with every answer cached by request and its cost counted in `usage`.
    Answers are written as they arrive (every 16 answers or every second, and whatever is
    left when a call ends or fails), so an interrupted run keeps everything answered before
    the interrupt. `write=False` reads the cache but never writes it (dry runs)."""

    FLUSH_EVERY = 16
    FLUSH_SECONDS = 1.0

    def __init__(self, inner, store: Store, write: bool = True):
        self.inner = inner
        self.store = store
        self.write = write
        self._usage = Usage()
        self._can_ll: bool | None = None
        self._can_ft: bool | None = None
        self._unwritten: list[dict] = []  # a capability probe's answer, waiting for the first answers
        self._planned: dict[str, dict] = {}  # a dry run's planned answers, by key (never written)

    kind = property(lambda self: self.inner.kind)
    model_id = property(lambda self: self.inner.model_id)
    capabilities = property(lambda self: self.inner.capabilities)
    price = property(lambda self: self.inner.price)
    usage = property(lambda self: self._usage)  # what this wrapper's calls cost: model calls, hits, tokens, $

    def local_model(self):
        return self.inner.local_model()

    @property
    def can_loglikelihood(self) -> bool:
        """The backend's declared answer; a backend that must ask its server
        (`capabilities.loglikelihood` is None) asks once, and the answer is cached like any
        request, so cached runs stay offline."""
        if self._can_ll is None:
            self._can_ll = self._probe(
                "loglikelihood", self.inner.capabilities.loglikelihood, self.inner.probe_loglikelihood
            )
        return self._can_ll

    @property
    def can_first_token(self) -> bool:
        """As `can_loglikelihood`, for chat answers' first-token log-probabilities."""
        if self._can_ft is None:
            self._can_ft = self._probe("first_token", self.inner.capabilities.first_token, self.inner.probe_first_token)
        return self._can_ft

    def _probe(self, capability: str, declared: bool | None, ask) -> bool:
        if declared is not None:
            return bool(declared)
        key = request_key(self.identity(), "probe", {"capability": capability})
        found = self.store.cache_get([key])
        if key in found:
            return bool(found[key]["value"])
        value = bool(ask())
        if self.write:  # written with the first answers, so a run that stores nothing leaves no file
            row = dict(key=key, backend=self.model_id, kind="probe", request="{}", n_tokens=0)
            self._unwritten.append({**row, "response": json.dumps({"value": value})})
        return value

    def identity(self) -> dict:
        return self.inner.identity()

    def companion(self, inner) -> "CachedBackend":
        """Another model (a searcher's proposer, say) behind the same store and mode: in a
        dry run it is planned too, never called."""
        if not self.write:
            from promptsearch.backends.planning import PlanningBackend

            inner = PlanningBackend(inner)
        return CachedBackend(inner, self.store, write=self.write)

    def _account(self, ans) -> None:
        price = self.inner.price
        self._usage.calls += 1
        self._usage.tokens += ans.n_tokens
        if price is None:
            self._usage.unpriced_calls += 1
        else:
            done = ans.completion_tokens
            self._usage.dollars += price.dollars(ans.n_tokens - done, done)

    def _run(self, kind: str, requests: Sequence, payloads: list[dict], call, decode):
        ident = self.identity()
        keys = [request_key(ident, kind, p) for p in payloads]
        found = self._lookup(keys)
        results = [None] * len(requests)
        todo: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            if k in found:
                results[i] = decode(found[k])
                self._usage.cache_hits += 1
            else:
                todo.setdefault(k, []).append(i)
        if not todo:
            return results
        groups = list(todo.items())
        rows: list[dict] = []
        last = [time.perf_counter()]

        def flush() -> None:
            if rows and self.write:
                self.store.cache_put(self._unwritten + rows)
                self._unwritten = []
            elif rows:  # a dry run: what it planned answers its own later requests, as the cache would
                self._planned.update((r["key"], json.loads(r["response"])) for r in rows)
            rows.clear()
            last[0] = time.perf_counter()

        def land(j: int, ans) -> None:
            key, idxs = groups[j]
            for i in idxs:
                results[i] = ans
            self._account(ans)
            rows.append(
                dict(
                    key=key,
                    backend=self.model_id,
                    kind=kind,
                    request=json.dumps(payloads[idxs[0]], ensure_ascii=False),
                    response=json.dumps(asdict(ans)),
                    n_tokens=ans.n_tokens,
                )
            )
            if len(rows) >= self.FLUSH_EVERY or time.perf_counter() - last[0] >= self.FLUSH_SECONDS:
                flush()

        batch = [requests[idxs[0]] for _, idxs in groups]
        t0 = time.perf_counter()
        try:
            if self.inner.capabilities.streaming:
                call(batch, land)
            else:
                for j, ans in enumerate(call(batch, None)):
                    land(j, ans)
        finally:
            self.usage.seconds += time.perf_counter() - t0
            flush()
        return results

    @staticmethod
    def _ll_payloads(requests: Sequence[LoglikRequest], soft_prompt: SoftPrompt | None) -> list[dict]:
        soft = soft_prompt.fingerprint() if soft_prompt is not None else None
        return [
            {"context": prompt_key(r.context), "continuation": r.continuation, "soft_prompt": soft} for r in requests
        ]

    @staticmethod
    def _gen_payloads(requests: Sequence[GenRequest], soft_prompt: SoftPrompt | None = None) -> list[dict]:
        out = [
            {
                "prompt": prompt_key(r.prompt),
                "max_new_tokens": r.max_new_tokens,
                "temperature": r.temperature,
                "top_p": r.top_p,
                "stop": list(r.stop),
                # greedy decoding ignores seed and sample index: one entry serves them all
                "sample_index": r.sample_index if r.temperature > 0 else 0,
                "seed": r.seed if r.temperature > 0 else 0,
            }
            for r in requests
        ]
        if soft_prompt is not None:  # only then, so plain generations keep the keys they always had
            for d in out:
                d["soft_prompt"] = soft_prompt.fingerprint()
        return out

    def missing(self, requests: Sequence, soft_prompt: SoftPrompt | None = None) -> list[int]:
        """Indices of the requests the cache cannot answer (what a budget has to pay for)."""
        if not requests:
            return []
        if isinstance(requests[0], GenRequest):
            kind, payloads = "gen", self._gen_payloads(requests, soft_prompt)
        elif isinstance(requests[0], FirstTokenRequest):
            kind, payloads = "first_token", self._ft_payloads(requests)
        else:
            kind, payloads = "loglik", self._ll_payloads(requests, soft_prompt)
        keys = [request_key(self.identity(), kind, p) for p in payloads]
        found = self._lookup(keys)
        return [i for i, k in enumerate(keys) if k not in found]

    def _lookup(self, keys: list[str]) -> dict:
        found = self.store.cache_get(list(dict.fromkeys(keys)))
        if self._planned:
            found.update({k: self._planned[k] for k in keys if k in self._planned and k not in found})
        return found

    @property
    def priced(self) -> bool:
        """Whether this model's calls have a known price (local models: free)."""
        return self.inner.price is not None

    def loglikelihood(
        self, requests: Sequence[LoglikRequest], soft_prompt: SoftPrompt | None = None, on_result=None
    ) -> list[LoglikResult]:
        def call(rs, on_result):
            kwargs = {"soft_prompt": soft_prompt} if soft_prompt is not None else {}
            if on_result is not None:
                kwargs["on_result"] = on_result
            return self.inner.loglikelihood(rs, **kwargs)

        out = self._run("loglik", requests, self._ll_payloads(requests, soft_prompt), call, lambda d: LoglikResult(**d))
        return _streamed(out, on_result)

    def generate(
        self, requests: Sequence[GenRequest], soft_prompt: SoftPrompt | None = None, on_result=None
    ) -> list[GenResult]:
        def call(rs, on_result):
            kwargs: dict = {"soft_prompt": soft_prompt} if soft_prompt is not None else {}
            if on_result is not None:
                kwargs["on_result"] = on_result
            return self.inner.generate(rs, **kwargs)

        out = self._run("gen", requests, self._gen_payloads(requests, soft_prompt), call, lambda d: GenResult(**d))
        return _streamed(out, on_result)

    @staticmethod
    def _ft_payloads(requests: Sequence[FirstTokenRequest]) -> list[dict]:
        return [{"prompt": prompt_key(r.prompt), "top_k": r.top_k} for r in requests]

    def first_token(self, requests: Sequence[FirstTokenRequest], on_result=None) -> list[FirstTokenResult]:
        """First-token top log-probabilities of chat answers, cached by request (kind
        `first_token`: never the key of a generation of the same prompt)."""

        def call(rs, on_result):
            return self.inner.first_token(rs, **({"on_result": on_result} if on_result is not None else {}))

        out = self._run("first_token", requests, self._ft_payloads(requests), call, lambda d: FirstTokenResult(**d))
        return _streamed(out, on_result)

    def embed(self, texts: Sequence[str]) -> list[EmbedResult]:
        """Text embeddings (local transformers models), cached like any request."""
        if not self.inner.capabilities.embed:
            raise no_embeddings(self.model_id)

        def call(rs, on_result):
            out = self.inner.embed(rs)
            for i, ans in enumerate(out if on_result is not None else ()):  # a streaming backend's contract
                on_result(i, ans)
            return out

        return self._run("embed", list(texts), [{"text": t} for t in texts], call, lambda d: EmbedResult(**d))


def _streamed(results: list, on_result) -> list:
    """The streaming contract for a caller that asked for it: every answer, in order, once
    the call is done (the wrapper writes answers to the cache as the inner backend streams)."""
    for i, r in enumerate(results if on_result is not None else ()):
        on_result(i, r)
    return results
