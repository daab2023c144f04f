"""Backend contract: batches of requests in, results out.

A prompt is a string or a tuple of segments, each a string or `TokenIds` (token ids placed
verbatim, e.g. an AutoPrompt trigger), so gradient searchers can put tokens that have no
stable text form into a template.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, Union, runtime_checkable


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


@runtime_checkable
class Backend(Protocol):
    kind: str  # "hf", "embedded", "openai", ...
    model_id: str
    can_loglikelihood: bool
    can_generate: bool

    def identity(self) -> dict[str, str]:
        """What makes this model's outputs what they are: kind, model id, revision."""

    def loglikelihood(
        self, requests: Sequence[LoglikRequest], soft_prompt: SoftPrompt | None = None
    ) -> list[LoglikResult]: ...

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]: ...
