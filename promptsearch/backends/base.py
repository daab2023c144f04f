"""Backend contract: batches of requests in, results out.

A prompt is a string or a tuple of segments, each a string or `TokenIds` (token ids placed
verbatim, e.g. an AutoPrompt trigger), so gradient searchers can put tokens that have no
stable text form into a template.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

from promptsearch.pricing import FREE, Price


@dataclass(frozen=True)
class TokenIds:
    ids: tuple[int, ...]


Segment = Union[str, TokenIds]
Prompt = Union[str, tuple[Segment, ...]]


def prompt_segments(prompt: Prompt) -> tuple[Segment, ...]:
    return (prompt,) if isinstance(prompt, str) else tuple(prompt)


def prompt_key(prompt: Prompt) -> list:
    """JSON-able form of a prompt for cache keys and records."""
    return [s if isinstance(s, str) else {"ids": list(s.ids)} for s in prompt_segments(prompt)]


@dataclass(frozen=True)
class LoglikRequest:
    """log P(continuation | context)."""

    context: Prompt
    continuation: str


@dataclass(frozen=True)
class GenRequest:
    prompt: Prompt
    max_new_tokens: int = 32
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ("\n",)
    sample_index: int = 0  # k self-consistency samples are k distinct requests
    seed: int = 0


@dataclass(frozen=True)
class FirstTokenRequest:
    """The `top_k` most likely first tokens of a chat model's answer to `prompt`, with their
    log-probabilities: how label tasks are scored on a chat API that returns
    `top_logprobs` (evaluation/first_token.py turns them into label scores)."""

    prompt: Prompt
    top_k: int = 20


@dataclass
class FirstTokenResult:
    top: list  # [token text, log-probability] pairs, as the server listed them
    n_tokens: int  # prompt + generated tokens
    completion_tokens: int = 0


@dataclass
class LoglikResult:
    logprob: float
    is_greedy: bool
    n_tokens: int  # context + continuation tokens
    completion_tokens: int = 0  # of those, tokens a server generated (priced as output)


@dataclass
class GenResult:
    text: str
    n_tokens: int  # prompt + generated tokens
    completion_tokens: int = 0  # of those, generated (priced as output; local models leave it 0)


@dataclass
class EmbedResult:
    """A text's embedding: the target model's last hidden states, mean-pooled over its
    tokens, as base64 float16 (what the cache stores; `embedding_vector` reads it)."""

    vector: str
    n_tokens: int
    completion_tokens: int = 0  # nothing is generated: priced as input


def no_embeddings(model_id: str):
    """The error for kNN demo selection on a backend that gives no text embeddings."""
    from promptsearch.errors import PromptSearchError

    return PromptSearchError(
        f"'{model_id}' gives no text embeddings; kNN demo selection needs a local "
        "transformers target (embedded or hf:...)."
    )


def embedding_vector(res: EmbedResult):
    import base64

    import numpy as np

    return np.frombuffer(base64.b64decode(res.vector), dtype=np.float16).astype(np.float32)


@dataclass(frozen=True)
class SoftPrompt:
    """A continuous prompt. Either `vectors` [n_virtual, hidden], prepended to the input
    embeddings (prompt tuning, P-tuning), or `kv`: per layer a (keys, values) pair, each
    [kv_heads, n_virtual, head_dim], that every layer attends to before the input (prefix
    tuning; the input's positions start after the virtual tokens)."""

    vectors: Any = None  # numpy array or torch tensor
    name: str = "soft"
    digest: str = field(default="", compare=False)
    kv: Any = None  # tuple of (keys, values) per layer

    @property
    def length(self) -> int:
        """Virtual tokens."""
        return int(self.vectors.shape[0]) if self.vectors is not None else int(self.kv[0][0].shape[1])

    def fingerprint(self) -> str:
        if self.digest:
            return self.digest
        import numpy as np

        def raw(x):
            arr = x.detach().cpu().float().numpy() if hasattr(x, "detach") else np.asarray(x, dtype="float32")
            return arr.tobytes() + str(arr.shape).encode()

        parts = [raw(self.vectors)] if self.vectors is not None else [b"kv"] + [raw(t) for kv in self.kv for t in kv]
        return hashlib.sha256(b"".join(parts)).hexdigest()[:16]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared once and read by callers instead of probing for
    attributes. A capability that only the server can tell (`loglikelihood=None`) is asked
    once through `Backend.probe_loglikelihood`, and the cache wrapper keeps the answer."""

    loglikelihood: bool | None = True  # scores log P(continuation | context); None: ask the server
    generate: bool = True  # writes text
    embed: bool = False  # text embeddings (kNN demo selection)
    soft_prompts: bool = False  # takes a SoftPrompt before every request
    token_ids: bool = False  # takes TokenIds segments in prompts (triggers with no stable text)
    streaming: bool = False  # calls `on_result(i, answer)` as answers finish (the cache writes as they come)
    chat: bool = False  # wraps a user text in its own chat template (a chat API)
    local_model: bool = False  # exposes the LocalModel interface (backends/local.py): gradient and RL searchers
    # returns the top log-probabilities of a chat answer's first token (FirstTokenRequest);
    # None: ask the server once (`probe_first_token`)
    first_token: bool | None = False


class Backend:
    """The contract every model backend keeps: batches of requests in, one result per
    request out, in order; never a call per example.

    - `loglikelihood` and `generate` take `soft_prompt` (where `capabilities.soft_prompts`)
      and `on_result(i, answer)` (where `capabilities.streaming`): a backend that streams
      calls it once per request as answers finish, and still returns the whole list.
    - Results depend only on the request (and the identity), never on what else was in the
      batch: that is what makes them cacheable by request.
    - Errors are raised, never returned as results (errors are never cached).
    - `identity()` names everything that changes outputs (kind, model id, revision): it is
      part of every cache key.
    - `price` is the model's price (None: unknown, which a dollar budget refuses); local
      models are FREE.
    - `usage` is what the backend's calls cost (zero here: the cache wrapper counts them)
      and `missing(requests)` the requests it would have to compute (all of them here: the
      cache wrapper answers with what it holds)."""

    kind: str = ""
    model_id: str = ""
    capabilities: Capabilities = Capabilities()
    price: Price | None = FREE  # dollars per million tokens; None: unknown

    @property
    def usage(self):
        from promptsearch.cost import Usage

        return Usage()

    @property
    def can_loglikelihood(self) -> bool:
        """Whether log-likelihoods can be scored now (a server is asked once where it must be)."""
        return bool(self.capabilities.loglikelihood)

    @property
    def can_generate(self) -> bool:
        return self.capabilities.generate

    @property
    def can_first_token(self) -> bool:
        """Whether chat answers' first-token log-probabilities can be had now (asked once)."""
        return bool(self.capabilities.first_token)

    @property
    def label_scoring(self) -> str:
        """How label tasks are scored on this backend: `loglikelihood` (each label word's
        log-likelihood), `first_token` (the first answer token's top log-probabilities) or
        `generate` (an answer generated and parsed)."""
        if self.can_loglikelihood:
            return "loglikelihood"
        return "first_token" if self.can_first_token else "generate"

    def probe_first_token(self) -> bool:
        """Ask the server whether chat answers come with top log-probabilities."""
        return bool(self.capabilities.first_token)

    def planned_first_token(self) -> bool:
        """What a dry run assumes `probe_first_token` would answer, without asking."""
        return bool(self.capabilities.first_token)

    def identity(self) -> dict[str, str]:
        """What makes this model's outputs what they are: kind, model id, revision."""
        raise NotImplementedError

    def probe_loglikelihood(self) -> bool:
        """Ask the server whether it scores log-likelihoods (for `loglikelihood=None`)."""
        return bool(self.capabilities.loglikelihood)

    def planned_loglikelihood(self) -> bool:
        """What a dry run assumes `probe_loglikelihood` would answer, without asking."""
        return bool(self.capabilities.loglikelihood)

    def loglikelihood(
        self,
        requests: Sequence[LoglikRequest],
        soft_prompt: SoftPrompt | None = None,
        on_result: Any = None,
    ) -> list[LoglikResult]:
        from promptsearch.errors import PromptSearchError

        raise PromptSearchError(f"'{self.model_id}' does not score log-likelihoods; use a harness that generates.")

    def generate(
        self, requests: Sequence[GenRequest], soft_prompt: SoftPrompt | None = None, on_result: Any = None
    ) -> list[GenResult]:
        from promptsearch.errors import PromptSearchError

        raise PromptSearchError(f"'{self.model_id}' does not generate text.")

    def first_token(self, requests: Sequence[FirstTokenRequest], on_result: Any = None) -> list[FirstTokenResult]:
        from promptsearch.errors import PromptSearchError

        raise PromptSearchError(
            f"'{self.model_id}' returns no first-token log-probabilities; use a harness that generates."
        )

    def embed(self, texts: Sequence[str]) -> list[EmbedResult]:
        raise no_embeddings(self.model_id)

    def missing(self, requests: Sequence, soft_prompt: SoftPrompt | None = None) -> list[int]:
        return list(range(len(requests)))

    def local_model(self):
        """The LocalModel interface (backends/local.py) of a local transformers model."""
        from promptsearch.errors import PromptSearchError

        raise PromptSearchError(
            f"'{self.model_id}' is not a local transformers model (embedded or hf:...), which gradient and RL "
            "searchers need; searchers that work with it: baseline, demos, ape, opro, grips, mipro, gepa."
        )
