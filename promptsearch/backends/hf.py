"""Local causal LMs through transformers.

Scoring is batched and length-sorted; within a batch the longest token prefix shared by
every row (usually the instruction and demos) is run once and its KV cache reused, and the
LM head runs only at the positions whose log-probabilities are read.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

from promptsearch.backends import batching
from promptsearch.backends.base import (
    Backend,
    Capabilities,
    EmbedResult,
    GenRequest,
    GenResult,
    LoglikRequest,
    LoglikResult,
    Prompt,
    SoftPrompt,
    prompt_segments,
)
from promptsearch.backends.batching import Row
from promptsearch.backends.prefix_store import PREFIX_CACHE_TOKENS, PrefixStore
from promptsearch.errors import PromptSearchError

# rows decoded at once: CPU measured (benchmarks/generation_speed.py), GPU not yet
GEN_SLOTS_CPU, GEN_SLOTS_GPU = 128, 256


@contextmanager
def quiet_library_deprecations():
    """TRL and PEFT read `is_gradient_checkpointing`, which transformers 5.x deprecates with a
    warning at model wrapping and at every generation step: nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


class HFBackend(Backend):
    """A local transformers causal LM: scores, generates, embeds, takes soft prompts and
    token-id segments, streams answers as they finish, and is a LocalModel for the gradient
    and RL searchers."""

    kind = "hf"
    capabilities = Capabilities(
        loglikelihood=True,
        generate=True,
        embed=True,
        soft_prompts=True,
        token_ids=True,
        streaming=True,
        local_model=True,
    )

    def __init__(
        self,
        name_or_path: str,
        model_id: str | None = None,
        revision: str | None = None,
        device: str = "auto",
        batch_tokens: int | None = None,
        max_batch: int = 64,
        gen_slots: int | None = None,
    ):
        self.name_or_path = name_or_path
        self.model_id = model_id or name_or_path
        self._revision = revision
        self.device_pref = device
        self.batch_tokens = batch_tokens
        self.max_batch = max_batch
        self.gen_slots = gen_slots
        self._model = None
        self._tok = None
        self._prefix_cache = PrefixStore()
        self._enc_cache: dict[str, list[int]] = {}
        self._kw: str | None = None
        # what scoring shares: "clusters" (per-input prefixes, many clusters to a forward, and a
        # soft prompt's KV once per scoring), "per-cluster" (the same, each cluster in batches of
        # its own), "batch" (only the prefix every row of a batch has), "none" (every row run in
        # full, the soft prompt's vectors too); benchmarks compare them
        self.sharing = "clusters"
        self._soft_kv_memo: tuple | None = None  # (soft prompt fingerprint, its per-layer keys and values)
        self.tokens_run = 0  # token positions the model has run (scoring and decoding), padding included

    # --- loading (lazy: a fully cached run never loads the model) -----------------------
    def identity(self) -> dict[str, str]:
        return {"kind": self.kind, "model": self.model_id, "revision": self.revision}

    def local_model(self) -> "HFBackend":
        return self  # it implements backends/local.py's LocalModel

    @property
    def revision(self) -> str:
        if self._revision is None:
            self._revision = _fingerprint(self.name_or_path)
        return self._revision

    @property
    def model(self):
        if self._model is None:
            self._load()
        return self._model

    @property
    def tokenizer(self):
        if self._tok is None:
            self._load()
        return self._tok

    @property
    def device(self):
        return self.model.device

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress bar is the one the user watches
        device = self.device_pref
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise PromptSearchError(
                f"PROMPTSEARCH_DEVICE={device}, but torch sees no CUDA device here; use cpu or auto."
            )
        dtype = torch.float32 if device == "cpu" else "auto"
        local = Path(self.name_or_path).expanduser().is_dir()
        cached_only = {} if local else {"local_files_only": True}  # a cached hub id loads without the network
        try:
            try:
                tok = AutoTokenizer.from_pretrained(self.name_or_path, **cached_only)
                model = AutoModelForCausalLM.from_pretrained(self.name_or_path, dtype=dtype, **cached_only)
            except OSError:
                if local:
                    raise
                if not _hub_reachable():
                    raise PromptSearchError(
                        f"Cannot load model '{self.name_or_path}': it is not in the local Hugging Face cache and "
                        "the hub cannot be reached from here; download it where there is a network, or give a "
                        "local folder (hf:/path/to/model)."
                    ) from None
                with _quiet_hub():
                    tok = AutoTokenizer.from_pretrained(self.name_or_path)
                    model = AutoModelForCausalLM.from_pretrained(self.name_or_path, dtype=dtype)
            model.to(device).eval().requires_grad_(False)  # searchers take gradients wrt their own inputs only
        except PromptSearchError:
            raise
        except Exception as e:  # any failure to load a folder or hub id is the user's to fix: one line
            raise PromptSearchError(f"Cannot load model '{self.name_or_path}': {_one_line(e)}") from None
        if self.gen_slots is None:
            self.gen_slots = GEN_SLOTS_CPU if device == "cpu" else GEN_SLOTS_GPU
        if self.batch_tokens is None:
            # On CPU throughput hardly grows past a few rows, while padding waste does, so small
            # batches win (measured: 512 tokens best on 2 cores); a GPU wants big ones.
            self.batch_tokens = 512 if device == "cpu" else 8192
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self._tok, self._model = tok, model

    # --- tokenisation ----------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        ids = self._enc_cache.get(text)
        if ids is None:
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
            if len(self._enc_cache) > 50_000:
                self._enc_cache.clear()
            self._enc_cache[text] = ids
        return ids

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        ids: list[int] = []
        for seg in prompt_segments(prompt):
            ids.extend(self._encode(seg) if isinstance(seg, str) else seg.ids)
        return ids

    def split_context(self, req: LoglikRequest) -> tuple[list[int], list[int]]:
        """Token ids of context and continuation, tokenised the way lm-evaluation-harness does:
        trailing context whitespace moves into the continuation, and the continuation's ids
        are what the whole string adds beyond the context's."""
        segs = list(prompt_segments(req.context))
        cont = req.continuation
        last = segs[-1] if segs and isinstance(segs[-1], str) else ""
        if last:
            n_sp = len(last) - len(last.rstrip())
            if n_sp:
                cont = last[-n_sp:] + cont
                last = last[:-n_sp]
            head = self.encode_prompt(tuple(segs[:-1]))
            ctx_tail = self._encode(last) if last else []
            whole = self._encode(last + cont)
            cont_ids = whole[len(ctx_tail) :]
            ctx = head + ctx_tail
        else:
            ctx = self.encode_prompt(tuple(segs))
            cont_ids = self._encode(cont)
        if not ctx:
            ctx = [
                self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
            ]
        return ctx, cont_ids

    # --- scoring ---------------------------------------------------------------------
    def loglikelihood(
        self,
        requests: Sequence[LoglikRequest],
        soft_prompt: SoftPrompt | None = None,
        on_result: Callable[[int, LoglikResult], None] | None = None,
    ) -> list[LoglikResult]:
        """Each continuation's log-probability after its context. `on_result(i, answer)` is
        called as each request's row batch finishes (the cache writes as they come, so an
        interrupted call keeps what it had done)."""
        import torch

        # Rows: one token sequence each, with (request, position, target) reads. Continuations
        # of one context that are a single token each share one row (one forward pass).
        by_ctx: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
        ntok = [0] * len(requests)
        n_soft = 0 if soft_prompt is None else soft_prompt.length
        for i, req in enumerate(requests):
            ctx, cont = self.split_context(req)
            by_ctx.setdefault(tuple(ctx), []).append((i, cont))
            ntok[i] = len(ctx) + len(cont) + n_soft
        rows: list[Row] = []
        for ctx, items in by_ctx.items():
            if all(len(c) == 1 for _, c in items):
                rows.append((list(ctx), [(i, len(ctx) - 1, c[0]) for i, c in items]))
            else:
                for i, c in items:
                    ids = list(ctx) + c[:-1]
                    rows.append((ids, [(i, len(ctx) - 1 + j, t) for j, t in enumerate(c)]))
        max_len = getattr(self.model.config, "max_position_embeddings", None) or 4096
        rows = [batching.truncate(r, max_len - n_soft) for r in rows]
        logp = [0.0] * len(requests)
        greedy = [True] * len(requests)
        # soft prompts come before every row, so rows share no prefix of token ids
        plan = (
            [
                (b, None)
                for b in batching.batches(sorted(rows, key=lambda r: -len(r[0])), self.batch_tokens, self.max_batch)
            ]
            if soft_prompt is not None
            else self._plan(rows)
        )
        # a request's reads all sit in one row, so it is complete once that row's batch is done
        pending = set(range(len(requests)))
        with torch.inference_mode(), _gqa_in_masked_sdpa(self.model.device):
            for n, (batch, cuts) in enumerate(plan):
                if cuts is not None and any(
                    tuple(ids[:c]) not in self._prefix_cache for (ids, _), c in zip(batch, cuts)
                ):
                    self._prefetch(plan, n)
                done = set()
                for req_i, lp, is_g in self._score_batch(batch, soft_prompt, cuts):
                    logp[req_i] += lp
                    greedy[req_i] = greedy[req_i] and is_g
                    done.add(req_i)
                if on_result is not None:
                    for i in sorted(done & pending):
                        on_result(i, LoglikResult(logp[i], greedy[i], ntok[i]))
                pending -= done
        out = [LoglikResult(logp[i], greedy[i], ntok[i]) for i in range(len(requests))]
        if on_result is not None:
            for i in sorted(pending):  # rows truncation left without a read
                on_result(i, out[i])
        return out

    def embed(self, texts: Sequence[str], batch_size: int = 16) -> list[EmbedResult]:
        """Each text's last hidden states mean-pooled over its tokens (no template, no special
        tokens): what kNN demo selection compares (KATE with the target's own encoder)."""
        import base64

        import torch

        out: list[EmbedResult] = []
        model = self.model
        base = getattr(model, model.base_model_prefix)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                ids = [self._encode(t) or [self.tokenizer.eos_token_id] for t in texts[s : s + batch_size]]
                x = torch.full((len(ids), max(map(len, ids))), pad, dtype=torch.long, device=model.device)
                mask = torch.zeros_like(x)
                for b, row in enumerate(ids):
                    x[b, : len(row)] = torch.tensor(row, device=model.device)
                    mask[b, : len(row)] = 1
                hidden = base(input_ids=x, attention_mask=mask).last_hidden_state.float()  # [b, t, h]
                pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # [b, h]
                for row, vec in zip(ids, pooled.cpu().numpy().astype("float16")):
                    out.append(EmbedResult(base64.b64encode(vec.tobytes()).decode(), len(row)))
        return out

    def next_token_logprobs(self, prompts: Sequence[Prompt], batch_size: int = 16):
        """The model's whole next-token distribution after each prompt, as a float32 CPU
        tensor [len(prompts), vocab] of log-probabilities. The context is tokenised as
        `loglikelihood` tokenises it before a continuation that starts with a space, so entry
        [i, t] is the log-probability `loglikelihood` gives a one-token word t after prompt i."""
        import torch

        ctxs = [self.split_context(LoglikRequest(p, " x"))[0] for p in prompts]
        model = self.model
        base, head = getattr(model, model.base_model_prefix), self.head
        out = []
        with torch.inference_mode():
            for s in range(0, len(ctxs), batch_size):
                part = ctxs[s : s + batch_size]
                ids = torch.full(
                    (len(part), max(len(c) for c in part)),
                    self.tokenizer.pad_token_id,
                    dtype=torch.long,
                    device=model.device,
                )  # right-padded, as _score_batch
                for b, c in enumerate(part):
                    ids[b, : len(c)] = torch.tensor(c, device=model.device)
                hidden = base(input_ids=ids).last_hidden_state
                last = hidden[
                    torch.arange(len(part), device=model.device),
                    torch.tensor([len(c) - 1 for c in part], device=model.device),
                ]
                out.append(torch.log_softmax(head(last).float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros((0, len(self.tokenizer)))

    def _plan(self, rows: list[Row]) -> list[tuple[list[Row], list[int] | None]]:
        return batching.plan(rows, self.sharing, *self._batch_limits)

    @property
    def _batch_limits(self) -> tuple[int, int]:
        return self.batch_tokens, self.max_batch  # tokens (padded width x rows) and rows per forward

    def _score_batch(self, batch: list[Row], soft_prompt, cuts: list[int] | None = None):
        import torch

        model = self.model
        base = getattr(model, model.base_model_prefix)
        if cuts is not None and len({tuple(ids[:c]) for (ids, _), c in zip(batch, cuts)}) > 1:
            return self._score_clusters(batch, cuts)
        shared = (
            cuts[0]
            if cuts
            else batching.shared(batch)
            if soft_prompt is None and len(batch) > 1 and self.sharing != "none"
            else 0
        )
        if shared < batching.MIN_SHARED_PREFIX and not cuts:  # a cluster's cut was chosen as worth its prefix pass
            shared = 0
        dev = model.device
        pad = self.tokenizer.pad_token_id
        L = max(len(ids) for ids, _ in batch) - shared
        self.tokens_run += L * len(batch)
        input_ids = torch.full((len(batch), L), pad, dtype=torch.long, device=dev)  # [B, L] right-padded
        for b, (ids, _) in enumerate(batch):
            input_ids[b, : len(ids) - shared] = torch.tensor(ids[shared:], device=dev)
        # Right padding needs no attention mask: causal attention never lets a real token
        # see the pads after it, and pads are never read.
        if soft_prompt is not None and soft_prompt.vectors is not None and self.sharing != "none":
            # the virtual tokens' keys and values, run once for the whole scoring and reused
            kv = self._soft_prompt_kv(soft_prompt, len(batch))
            hidden = base(input_ids=input_ids, **{self._cache_kw: kv}, use_cache=True).last_hidden_state
        elif soft_prompt is not None:
            hidden = self.soft_hidden(input_ids, soft_prompt)
        elif shared:
            kv = self._prefix_kv(tuple(batch[0][0][:shared]), len(batch))
            hidden = base(input_ids=input_ids, **{self._cache_kw: kv}, use_cache=True).last_hidden_state
        else:
            hidden = base(input_ids=input_ids).last_hidden_state
        return self._read(batch, hidden, [shared] * len(batch))

    def _score_clusters(self, batch: list[Row], cuts: list[int]):
        """Rows of several clusters in one forward, each after its own cluster's prefix KV:
        the prefixes left-padded to one width (pads masked), each row's positions continuing
        from its own prefix's length."""
        import torch
        from transformers import DynamicCache

        model = self.model
        base = getattr(model, model.base_model_prefix)
        dev = model.device
        prefixes = [tuple(ids[:c]) for (ids, _), c in zip(batch, cuts)]
        layers = self._prefix_layers_many(list(dict.fromkeys(prefixes)))
        P = max(cuts)
        L = max(len(ids) - c for (ids, _), c in zip(batch, cuts))
        B = len(batch)
        self.tokens_run += L * B
        input_ids = torch.full((B, L), self.tokenizer.pad_token_id, dtype=torch.long, device=dev)
        mask = torch.zeros((B, P + L), dtype=torch.long, device=dev)
        for b, ((ids, _), c) in enumerate(zip(batch, cuts)):
            input_ids[b, : len(ids) - c] = torch.tensor(ids[c:], device=dev)
            mask[b, P - c : P + len(ids) - c] = 1
        pos = torch.tensor(cuts, device=dev)[:, None] + torch.arange(L, device=dev)[None]
        rows_of: dict[tuple, list[int]] = {}
        for b, pre in enumerate(prefixes):
            rows_of.setdefault(pre, []).append(b)
        data = []
        for li, (k0, v0) in enumerate(layers[prefixes[0]]):
            K = k0.new_zeros((B, k0.shape[1], P, k0.shape[3]))
            V = v0.new_zeros((B, v0.shape[1], P, v0.shape[3]))
            for pre, idx in rows_of.items():
                k, v = layers[pre][li]
                sel = torch.tensor(idx, device=dev)
                K[sel, :, P - len(pre) :] = k.expand(len(idx), -1, -1, -1)
                V[sel, :, P - len(pre) :] = v.expand(len(idx), -1, -1, -1)
            data.append((K, V))
        kv = DynamicCache(ddp_cache_data=data, config=model.config)
        hidden = base(
            input_ids=input_ids, attention_mask=mask, position_ids=pos, **{self._cache_kw: kv}, use_cache=True
        ).last_hidden_state
        return self._read(batch, hidden, cuts)

    def _read(self, batch: list[Row], hidden, cuts: list[int]):
        """(request, log-prob, is greedy) for every read of the batch's rows; `cuts`: the
        prefix each row skipped, so its reads sit that much earlier in `hidden`."""
        import torch

        dev = self.model.device
        rows_i, pos_i, targets, owners = [], [], [], []
        for b, (_, reads) in enumerate(batch):
            for req_i, pos, tgt in reads:
                rows_i.append(b)
                pos_i.append(pos - cuts[b])  # >= 0: a shared prefix never reaches a read position
                targets.append(tgt)
                owners.append(req_i)
        # each position read once through the head, however many labels read it
        where = list(dict.fromkeys(zip(rows_i, pos_i)))
        slot = {rp: i for i, rp in enumerate(where)}
        h = hidden[torch.tensor([r for r, _ in where], device=dev), torch.tensor([q for _, q in where], device=dev)]
        logits = self.head(h).float()  # [U, V]: only the positions we read
        lsm = torch.log_softmax(logits, dim=-1)[torch.tensor([slot[rp] for rp in zip(rows_i, pos_i)], device=dev)]
        tgt = torch.tensor(targets, device=dev)
        lp = lsm.gather(1, tgt[:, None]).squeeze(1).tolist()
        is_g = (lsm.argmax(-1) == tgt).tolist()
        return list(zip(owners, lp, is_g))

    def soft_hidden(self, input_ids, soft_prompt: SoftPrompt):
        """Final hidden states [B, L, H] of right-padded rows with a soft prompt's virtual
        tokens in front (vectors before the embeddings, or per-layer keys/values), at the
        rows' own positions. Scoring runs it under inference mode; soft-prompt training runs
        it with the prompt's graph, so the loss trained on is the one scored."""
        import torch

        model = self.model
        base = getattr(model, model.base_model_prefix)
        if soft_prompt.kv is not None:  # prefix tuning: the input's positions start after the prefix
            return base(
                input_ids=input_ids, **{self._cache_kw: _soft_kv(soft_prompt, len(input_ids), model)}, use_cache=True
            ).last_hidden_state
        vec = torch.as_tensor(soft_prompt.vectors, dtype=model.dtype, device=model.device)  # [n, H]
        emb = model.get_input_embeddings()(input_ids)  # [B, L, H]
        emb = torch.cat([vec.unsqueeze(0).expand(len(input_ids), -1, -1), emb], dim=1)
        return base(inputs_embeds=emb).last_hidden_state[:, vec.shape[0] :]

    @property
    def _cache_kw(self) -> str:
        """The forward argument that takes a KV cache: `cache` in current transformers,
        `past_key_values` in earlier 5.x releases (deprecated, to be removed in 5.40)."""
        if self._kw is None:
            import inspect

            base = getattr(self.model, self.model.base_model_prefix)
            self._kw = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        return self._kw

    def _prefix_kv(self, prefix: tuple[int, ...], batch_size: int):
        """KV cache of a shared prefix, computed once and expanded (a view) to the batch."""
        from transformers import DynamicCache

        # The forward pass concatenates onto these, never writes in place, so views are safe.
        data = [
            (k.expand(batch_size, -1, -1, -1), v.expand(batch_size, -1, -1, -1)) for k, v in self._prefix_layers(prefix)
        ]
        return DynamicCache(ddp_cache_data=data, config=self.model.config)

    def _prefix_layers_many(self, prefixes: list[tuple[int, ...]]) -> dict[tuple[int, ...], list]:
        """`_prefix_layers` for many prefixes, those not kept yet run in right-padded forwards
        (causal attention: a prefix never sees the pads after it), longest first and cut so
        padded width x prefixes stays in the batch budget."""
        self._run_prefixes([p for p in dict.fromkeys(prefixes) if p not in self._prefix_cache])
        return {p: self._prefix_layers(p) for p in prefixes}

    def _run_prefixes(self, todo: list[tuple[int, ...]]) -> None:
        import torch

        model = getattr(self.model, self.model.base_model_prefix)
        dev = self.model.device
        todo = sorted(todo, key=len, reverse=True)
        while todo:
            width, n = len(todo[0]), 1
            while n < len(todo) and n < self.max_batch and width * (n + 1) <= max(self.batch_tokens, width):
                n += 1
            chunk, todo = todo[:n], todo[n:]
            if len(chunk) == 1:  # one prefix: it may extend one already kept
                self._prefix_layers(chunk[0])
                continue
            ids = torch.full((len(chunk), width), self.tokenizer.pad_token_id, dtype=torch.long, device=dev)
            for i, p in enumerate(chunk):
                ids[i, : len(p)] = torch.tensor(p, device=dev)
            self.tokens_run += width * len(chunk)
            out = model(input_ids=ids, use_cache=True)
            cache = out.cache if self._cache_kw == "cache" else out.past_key_values
            for i, p in enumerate(chunk):  # copies, so the padded batch is not kept alive
                self._prefix_cache.keep(
                    p,
                    [
                        (layer.keys[i : i + 1, :, : len(p)].clone(), layer.values[i : i + 1, :, : len(p)].clone())
                        for layer in cache.layers
                    ],
                )

    def _prefetch(self, plan: list, start: int) -> None:
        """Before batch `start`, run the prefixes it and the batches after it need and that are
        not kept, many to a forward (up to half the prefix cache, so none is evicted before
        its batch runs)."""
        todo: dict[tuple[int, ...], None] = {}
        tokens = 0
        for batch, cuts in plan[start:]:
            if cuts is None:
                break
            for (ids, _), c in zip(batch, cuts):
                pre = tuple(ids[:c])
                if pre not in todo and pre not in self._prefix_cache:
                    if todo and tokens + c > PREFIX_CACHE_TOKENS // 2:
                        self._run_prefixes(list(todo))
                        return
                    todo[pre] = None
                    tokens += c
        self._run_prefixes(list(todo))

    def _soft_prompt_kv(self, soft_prompt: SoftPrompt, batch_size: int):
        """A prompt-tuned soft prompt's virtual tokens as per-layer keys and values, run once
        per soft prompt (the last one is kept) and expanded (a view) to the batch."""
        from transformers import DynamicCache

        fp = soft_prompt.fingerprint()
        if self._soft_kv_memo is None or self._soft_kv_memo[0] != fp:
            self.tokens_run += soft_prompt.length
            self._soft_kv_memo = (fp, self.generation_prefix((), soft_prompt)[0])  # the vectors alone
        data = [(k.expand(batch_size, -1, -1, -1), v.expand(batch_size, -1, -1, -1)) for k, v in self._soft_kv_memo[1]]
        return DynamicCache(ddp_cache_data=data, config=self.model.config)

    def _prefix_layers(self, prefix: tuple[int, ...]) -> list:
        """Per-layer (keys, values) of a token prefix for one row, kept between calls. A
        prefix that extends one already kept (an input after a shared instruction) runs only
        its new tokens."""
        import torch
        from transformers import DynamicCache

        kv = self._prefix_cache.get(prefix)
        if kv is None:
            base_len, base_kv = self._prefix_cache.longest_start(prefix)
            model = getattr(self.model, self.model.base_model_prefix)
            self.tokens_run += len(prefix) - base_len
            past = DynamicCache(ddp_cache_data=base_kv, config=self.model.config) if base_kv else None
            out = model(
                input_ids=torch.tensor([prefix[base_len:]], device=self.model.device),
                **({self._cache_kw: past} if past is not None else {}),
                use_cache=True,
            )
            cache = out.cache if self._cache_kw == "cache" else out.past_key_values
            kv = [(layer.keys, layer.values) for layer in cache.layers]
            self._prefix_cache.keep(prefix, kv)
        return kv

    def generation_prefix(self, ids: tuple[int, ...], soft_prompt: SoftPrompt | None) -> tuple[list | None, int]:
        """Per-layer (keys, values) for one row of what every prompt of a generation call
        starts with: a soft prompt's virtual tokens, then the shared tokens `ids`; and its
        length in positions. (None, 0) when there is nothing to share."""
        import torch

        if soft_prompt is None:
            return (self._prefix_layers(ids), len(ids)) if ids else (None, 0)
        model = getattr(self.model, self.model.base_model_prefix)
        dev = self.model.device
        n = soft_prompt.length
        with torch.inference_mode():
            if soft_prompt.kv is not None:  # prefix tuning: its keys and values, then the shared tokens
                past = _soft_kv(soft_prompt, 1, self.model)
                if not ids:
                    return [(layer.keys, layer.values) for layer in past.layers], n
                out = model(input_ids=torch.tensor([ids], device=dev), **{self._cache_kw: past}, use_cache=True)
            else:
                vec = torch.as_tensor(soft_prompt.vectors, dtype=self.model.dtype, device=dev)  # [n, H]
                emb = torch.cat(
                    [vec, self.model.get_input_embeddings()(torch.tensor(ids, dtype=torch.long, device=dev))]
                )
                out = model(inputs_embeds=emb[None], use_cache=True)
        cache = out.cache if self._cache_kw == "cache" else out.past_key_values
        return [(layer.keys, layer.values) for layer in cache.layers], n + len(ids)

    def head(self, hidden):
        """Logits from final hidden states as the model's own forward makes them: the output
        embedding, then the final scaling or soft-capping some models apply (Cohere's
        `logit_scale`, Granite's `logits_scaling`, Gemma's `final_logit_softcapping`). Every
        path that runs the base model and the head apart goes through here."""
        import torch

        logits = self.model.get_output_embeddings()(hidden)
        cfg = self.model.config.get_text_config()
        if getattr(cfg, "logit_scale", None) is not None:
            logits = logits * cfg.logit_scale
        if getattr(cfg, "logits_scaling", None) is not None:
            logits = logits / cfg.logits_scaling
        if getattr(cfg, "final_logit_softcapping", None) is not None:
            logits = torch.tanh(logits / cfg.final_logit_softcapping) * cfg.final_logit_softcapping
        return logits

    @property
    def eos_ids(self) -> set[int]:
        """Tokens that end a generation: the tokenizer's end of text and the model's own."""
        ids = {self.tokenizer.eos_token_id}
        cfg = getattr(self.model, "generation_config", None)
        extra = getattr(cfg, "eos_token_id", None) if cfg is not None else None
        ids.update(extra if isinstance(extra, (list, tuple)) else [extra])
        return {i for i in ids if i is not None}

    # --- generation ------------------------------------------------------------------
    def generate(
        self,
        requests: Sequence[GenRequest],
        soft_prompt: SoftPrompt | None = None,
        on_result: Callable[[int, GenResult], None] | None = None,
    ) -> list[GenResult]:
        """Greedy or sampled continuations, decoded with continuous batching (see
        `decoding.py`). With a soft prompt, its virtual tokens come before every prompt
        (vectors before the embeddings, or per-layer keys/values). `on_result(i, answer)` is
        called as each sequence finishes."""
        from promptsearch.backends.decoding import decode

        tok = self.tokenizer
        out: list[GenResult | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.max_new_tokens, r.temperature, r.top_p, r.stop), []).append(i)
        for (max_new, temp, top_p, stop), idxs in groups.items():
            encoded = [self.encode_prompt(requests[i].prompt) or [tok.eos_token_id] for i in idxs]

            def finish(j: int, new: list[int], idxs=idxs, encoded=encoded, stop=stop) -> None:
                text = tok.decode(new, skip_special_tokens=True)
                for st in stop:
                    cut = text.find(st)
                    if cut >= 0:
                        text = text[:cut]
                out[idxs[j]] = GenResult(text, len(encoded[j]) + len(new), len(new))
                if on_result is not None:
                    on_result(idxs[j], out[idxs[j]])

            decode(
                self,
                [requests[i] for i in idxs],
                encoded,
                max_new,
                temp,
                top_p,
                stop,
                soft_prompt,
                slots=self.gen_slots,
                min_shared=batching.MIN_SHARED_PREFIX,
                on_done=finish,
            )
        return out  # type: ignore[return-value]


def _soft_kv(soft_prompt: SoftPrompt, batch_size: int, model):
    """A prefix-tuned prompt's per-layer keys and values as a cache for a batch (views)."""
    import torch
    from transformers import DynamicCache

    data = []
    for k, v in soft_prompt.kv:
        k = torch.as_tensor(k, dtype=model.dtype, device=model.device)
        v = torch.as_tensor(v, dtype=model.dtype, device=model.device)
        data.append((k.unsqueeze(0).expand(batch_size, -1, -1, -1), v.unsqueeze(0).expand(batch_size, -1, -1, -1)))
    return DynamicCache(ddp_cache_data=data, config=model.config)


@contextmanager
def _gqa_in_masked_sdpa(device):
    """On CPU, let SDPA attend grouped key/value heads itself when a mask is given, instead of
    transformers copying each cached key and value head out to every query head first
    (`repeat_kv`). Transformers does this unmasked only, because masked GQA falls back to
    the slow kernel on CUDA; on CPU the masked GQA kernel gives the same numbers (checked:
    max |delta| 0.0) and a scoring forward after cached prefixes ran ~10% faster (the copies
    were 14% of it). Scoped to our forwards, the previous setting restored."""
    import os

    if getattr(device, "type", str(device)) != "cpu":
        yield
        return
    key = "TRANSFORMERS_SDPA_FORCE_GQA"
    before = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _hub_reachable() -> bool:
    """Whether the hub's host name resolves: no resolution means no network, and the hub
    client's retries (tens of seconds of noise) can be skipped."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


@contextmanager
def _quiet_hub():
    """Keeps the hub client's retry warnings out of the user's terminal; the one-line error
    that follows a failure says what matters."""
    import logging

    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _one_line(e: Exception, limit: int = 300) -> str:
    """An exception's message folded onto one line (transformers' messages run over many)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fingerprint(name_or_path: str) -> str:
    """A revision for cache keys, found without loading the model or the network: local
    folders hash their config and their files' sizes and mtimes; hub ids use the commit of
    the snapshot in the local HF cache."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(p.iterdir()):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
                if f.name == "config.json":
                    h.update(f.read_bytes())
        return h.hexdigest()[:12]
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name_or_path, "config.json")
        if isinstance(cached, str):
            return Path(cached).parent.name  # .../snapshots/<commit>/config.json
    except Exception:  # an id the hub library rejects: loading will say what is wrong
        pass
    return "hub:unresolved"


def load_hf(spec: str, settings) -> HFBackend:
    """`hf:<hub id or local path>`."""
    if not spec:
        raise PromptSearchError("Model 'hf:' needs a hub id or a local folder, e.g. hf:HuggingFaceTB/SmolLM2-135M.")
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")):
        if not path.is_dir():
            raise PromptSearchError(
                f"Model path '{spec}' is not a folder; give a transformers model folder with config.json."
            )
        cfg = path / "config.json"
        if not cfg.is_file():
            raise PromptSearchError(f"Model path '{spec}' is not a model: no config.json in it.")
        try:
            json.loads(cfg.read_text())
        except json.JSONDecodeError:
            raise PromptSearchError(f"Model path '{spec}' is not a model: its config.json is not valid JSON.") from None
        spec = str(path.resolve())
    return HFBackend(
        spec,
        model_id=f"hf:{spec}",
        device=settings.device,
        batch_tokens=settings.batch_tokens,
        gen_slots=settings.gen_slots,
    )
