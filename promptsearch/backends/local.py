"""What gradient and RL searchers need of a local transformers model, declared in one place.

`HFBackend` (and the embedded model, which is one) implements it; a searcher asks for it
with `backend.local_model()`, which any other backend answers with one clear line, and
declares that it needs it (`Searcher.requires`), so the runner checks before the search."""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

from promptsearch.backends.base import LoglikRequest, Prompt, SoftPrompt


@runtime_checkable
class LocalModel(Protocol):
    model_id: str  # as in records and cache keys
    name_or_path: str  # the folder or hub id it was loaded from (a policy or PEFT base)
    model: Any  # the transformers causal LM, loaded on first use
    tokenizer: Any
    device: Any

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        """Token ids of a prompt, its TokenIds segments placed verbatim."""

    def split_context(self, req: LoglikRequest) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids) exactly as `loglikelihood` scores them: the
        continuation's tokens are the ones its log-probability is summed over."""

    def head(self, hidden: Any) -> Any:
        """Logits [..., V] from last hidden states [..., H] (the LM head)."""

    def soft_hidden(self, input_ids: Any, soft_prompt: SoftPrompt) -> Any:
        """Last hidden states [B, L, H] of `input_ids` [B, L] after the soft prompt's virtual
        tokens, with gradients to the soft prompt (prompt tuning, P-tuning, prefix tuning)."""

    def next_token_logprobs(self, prompts: Sequence[Prompt], batch_size: int = 16) -> Any:
        """Log-probabilities [N, V] of the token after each prompt."""
