"""The stand-in model behind `--dry-run`: it answers every request without a model or a
server, so a searcher runs its whole schedule and the cache wrapper counts what the real run
would send.

Generations are unique placeholder sentences of the full `max_new_tokens` length (so APE's
pool is as large as it can be and the count is an upper bound); log-likelihoods are fixed
pseudo-random numbers. Tokens are estimated at 4 characters a token. Requests already in
the cache are looked up for real and cost nothing, exactly as in the real run.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
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

CHARS_PER_TOKEN = 4


def estimate_tokens(prompt) -> int:
    n = 0
    for seg in prompt_key(prompt):
        n += len(seg["ids"]) if isinstance(seg, dict) else -(-len(seg) // CHARS_PER_TOKEN)
    return max(1, n)


def _digest(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


class PlanningBackend(Backend):
    """The real backend's identity, price and capabilities (never streaming), answering
    with placeholders."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.kind = inner.kind
        self.model_id = inner.model_id
        self.price = inner.price
        self.capabilities = replace(inner.capabilities, streaming=False)

    def identity(self) -> dict:
        return self.inner.identity()  # same cache keys as the real model

    def probe_loglikelihood(self) -> bool:
        """What the model would answer, without asking a server (a cached answer wins)."""
        return self.inner.planned_loglikelihood()

    @property
    def can_loglikelihood(self) -> bool:
        return self.probe_loglikelihood()

    def probe_first_token(self) -> bool:
        return self.inner.planned_first_token()

    @property
    def can_first_token(self) -> bool:
        return self.probe_first_token()

    def local_model(self):
        return self.inner.local_model()

    def loglikelihood(
        self, requests: Sequence[LoglikRequest], soft_prompt: SoftPrompt | None = None, on_result=None
    ) -> list[LoglikResult]:
        out = []
        for r in requests:
            h = int(_digest(prompt_key(r.context), r.continuation)[:8], 16)
            n = estimate_tokens(r.context) + estimate_tokens(r.continuation)
            extra = 1 if self.kind == "openai" else 0  # the token an echo request generates
            out.append(LoglikResult(-(h % 10_000) / 1000.0, False, n + extra, extra))
        return out

    def first_token(self, requests: Sequence[FirstTokenRequest], on_result=None) -> list[FirstTokenResult]:
        """Placeholder tokens (no label among them) with fixed pseudo-random log-probabilities."""
        out = []
        for r in requests:
            h = int(_digest(prompt_key(r.prompt), r.top_k)[:8], 16)
            top = [[f"placeholder-{i}", -(i + 1) - (h % 1000) / 1000.0] for i in range(r.top_k)]
            out.append(FirstTokenResult(top, estimate_tokens(r.prompt) + 1, 1))
        return out

    def embed(self, texts: Sequence[str]) -> list[EmbedResult]:
        """Placeholder vectors (a dry run plans the embedding calls, it computes none)."""
        import base64

        import numpy as np

        if not self.capabilities.embed:
            raise no_embeddings(self.model_id)
        out = []
        for t in texts:
            rng = np.random.default_rng(int(_digest(t)[:8], 16))
            vec = rng.standard_normal(8).astype("float16")
            out.append(EmbedResult(base64.b64encode(vec.tobytes()).decode(), estimate_tokens(t)))
        return out

    def generate(
        self, requests: Sequence[GenRequest], soft_prompt: SoftPrompt | None = None, on_result=None
    ) -> list[GenResult]:
        out = []
        for r in requests:
            tag = _digest(prompt_key(r.prompt), r.sample_index, r.seed, r.temperature)[:10]
            text = f"Placeholder answer {tag} for a dry run."
            out.append(GenResult(text, estimate_tokens(r.prompt) + r.max_new_tokens, r.max_new_tokens))
        return out
