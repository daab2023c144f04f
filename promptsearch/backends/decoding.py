"""Continuous batching for the HF backend's generation.

One KV cache holds the rows being decoded. A row leaves it the step it finishes (end of text,
a stop string, its token limit) and waiting prompts join it as slots free up: they are run in
one prefill and their keys and values, padded on the left to the batch's length, are stacked
onto the running cache. Every row carries its own positions and attention mask, so padding
never shifts a row and columns no row attends to are dropped. The tokens every prompt of a
call starts with (instruction and demos), and a soft prompt's virtual tokens, are run once and
their keys and values reused for every row, as in scoring; a prompt asked for several samples
is prefilled once.

Greedy decoding takes the argmax; sampling draws from one generator per request seeded from
that request alone, so an answer never depends on which rows shared its batch.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from promptsearch.backends.base import GenRequest, SoftPrompt, prompt_key


@dataclass
class _Row:
    req: int  # index into the call's requests
    pos: int  # position of the row's next token
    gen: Any = None  # torch.Generator when sampling
    new: list[int] = field(default_factory=list)


def request_generator(r: GenRequest):
    """A random generator seeded from the request alone (prompt, settings, seed, sample index)."""
    import torch

    key = json.dumps(
        [prompt_key(r.prompt), r.max_new_tokens, r.temperature, r.top_p, list(r.stop), r.seed, r.sample_index]
    )
    return torch.Generator().manual_seed(int(hashlib.sha256(key.encode()).hexdigest()[:15], 16))


def decode(
    backend,
    reqs: list[GenRequest],
    encoded: list[list[int]],
    max_new: int,
    temp: float,
    top_p: float,
    stop: tuple[str, ...],
    soft_prompt: SoftPrompt | None,
    slots: int,
    min_shared: int,
    on_done: Callable[[int, list[int]], None] | None = None,
) -> list[list[int]]:
    """New token ids for each request (all with the same decoding settings); `on_done(j,
    ids)` as request j finishes."""
    import torch
    from transformers import DynamicCache

    model, tok = backend.model, backend.tokenizer
    # The base model and the output head apart, the head on each row's last position only (a
    # causal LM's own forward slices a padded batch's last positions into a non-contiguous
    # tensor, and its head on that copies the vocabulary matrix per row).
    base, head = getattr(model, model.base_model_prefix), backend.head
    dev = model.device
    eos = backend.eos_ids
    # The prefix every prompt shares, leaving each at least one token of its own (its last
    # position's logits start the decoding).
    shared = min(len(e) for e in encoded) - 1
    for e in encoded[1:]:
        i = 0
        while i < shared and e[i] == encoded[0][i]:
            i += 1
        shared = i
    if shared < min_shared and soft_prompt is None:
        shared = 0
    prefix, p_len = backend.generation_prefix(tuple(encoded[0][:shared]), soft_prompt)  # [(k, v)] of batch 1

    def cache(data):
        return {backend._cache_kw: DynamicCache(ddp_cache_data=data, config=model.config)}

    def kv_of(out):
        c = out.cache if backend._cache_kw == "cache" else out.past_key_values
        return [(layer.keys, layer.values) for layer in c.layers]

    def prefill(take: list[int]):
        tails = [tuple(encoded[j][shared:]) for j in take]
        uniq = list(dict.fromkeys(tails))  # a prompt asked several times (samples) runs once
        width, n = max(len(t) for t in uniq), len(uniq)
        ids = torch.full((n, width), tok.pad_token_id, dtype=torch.long, device=dev)
        mask = torch.zeros((n, width), dtype=torch.long, device=dev)
        for b, t in enumerate(uniq):  # left padding
            ids[b, width - len(t) :] = torch.tensor(t, device=dev)
            mask[b, width - len(t) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0) + p_len
        backend.tokens_run += ids.numel()
        kw: dict[str, Any] = {}
        if prefix is not None:
            kw = cache([(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in prefix])
            mask = torch.cat([mask.new_ones((n, p_len)), mask], dim=1)
        out = base(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kw)
        kv, logits = kv_of(out), head(out.last_hidden_state[:, -1])
        if n < len(take):
            at = {t: b for b, t in enumerate(uniq)}
            idx = torch.tensor([at[t] for t in tails], device=dev)
            kv, mask, logits = [(k[idx], v[idx]) for k, v in kv], mask[idx], logits[idx]
        rows = [_Row(j, p_len + len(t), request_generator(reqs[j]) if temp > 0 else None) for j, t in zip(take, tails)]
        return rows, kv, mask, logits

    # similar lengths prefill together, and the samples of one prompt side by side
    pending = deque(sorted(range(len(reqs)), key=lambda j: (-len(encoded[j]), encoded[j])))
    rows: list[_Row] = []
    kv: list = []
    past = None  # the cache object the last step updated in place; None once kv was rebuilt
    mask = logits = None
    result: list[list[int]] = [[] for _ in reqs]
    with torch.inference_mode():
        while pending or rows:
            free = slots - len(rows)
            if pending and (not rows or free >= max(1, slots // 4)):  # join in groups: each join copies the cache
                new_rows, new_kv, new_mask, new_logits = prefill(
                    [pending.popleft() for _ in range(min(free, len(pending)))]
                )
                if rows:
                    kv, mask = _stack(kv, mask, new_kv, new_mask)
                    logits = torch.cat([logits, new_logits])
                else:
                    kv, mask, logits = new_kv, new_mask, new_logits
                rows += new_rows
                past = None
                for row in new_rows:
                    result[row.req] = row.new
            picks = _pick(logits, rows, temp, top_p)
            keep = []
            for b, (row, t) in enumerate(zip(rows, picks)):
                if t not in eos:
                    row.new.append(t)
                    if not (
                        len(row.new) >= max_new
                        or (stop and any(s in tok.decode(row.new, skip_special_tokens=True) for s in stop))
                    ):
                        keep.append(b)
                        continue
                if on_done is not None:
                    on_done(row.req, row.new)
            if len(keep) < len(rows):
                rows = [rows[b] for b in keep]
                if not rows:
                    continue
                idx = torch.tensor(keep, device=dev)
                kv = [(k[idx], v[idx]) for k, v in kv]
                mask = mask[idx]
                kv, mask = _trim(kv, mask)
                past = None
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
            ids = torch.tensor([[row.new[-1]] for row in rows], device=dev)
            pos = torch.tensor([[row.pos] for row in rows], device=dev)
            backend.tokens_run += len(rows)
            # while no row joins or leaves, the model extends the cache in place
            past = past or {backend._cache_kw: _growing_cache(kv, model.config, room=max_new + 1)}
            out = base(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **past)
            kv, logits = kv_of(out), head(out.last_hidden_state[:, -1])
            for row in rows:
                row.pos += 1
    return result


def _growing_cache(kv, config, room: int):
    """A DynamicCache holding `kv` whose full-attention layers have `room` more positions
    allocated, so decoding steps write into it instead of concatenating a copy each step."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=config)
    for i, (k, v) in enumerate(kv):
        if type(cache.layers[i]) is DynamicLayer:
            cache.layers[i] = _grow_layer()(k, v, room)
        else:  # sliding-window and other layer types keep their own update
            cache.layers[i].update(k, v)
    return cache


@functools.cache
def _grow_layer():
    from transformers.cache_utils import DynamicLayer

    class GrowLayer(DynamicLayer):
        def __init__(self, k, v, room: int):
            super().__init__()
            self.lazy_initialization(k, v)
            self.n = n = k.shape[-2]
            self._k = k.new_empty(*k.shape[:-2], n + room, k.shape[-1])
            self._v = v.new_empty(*v.shape[:-2], n + room, v.shape[-1])
            self._k[..., :n, :], self._v[..., :n, :] = k, v
            self.keys, self.values = self._k[..., :n, :], self._v[..., :n, :]

        def update(self, key_states, value_states, *args, **kwargs):
            m = self.n + key_states.shape[-2]
            if m > self._k.shape[-2]:  # out of room: grow by concatenation from here on
                self._k, self._v = self.keys, self.values = super().update(key_states, value_states)
                self.n = m
                return self.keys, self.values
            self._k[..., self.n : m, :], self._v[..., self.n : m, :] = key_states, value_states
            self.n = m
            self.keys, self.values = self._k[..., :m, :], self._v[..., :m, :]
            return self.keys, self.values

    return GrowLayer


def _pick(logits, rows: list[_Row], temp: float, top_p: float) -> list[int]:
    import torch

    if temp == 0:
        return logits.argmax(-1).tolist()
    probs = torch.softmax(logits.float() / temp, dim=-1).cpu()  # [B, V]
    if top_p < 1.0:  # keep the smallest set of tokens whose mass reaches top_p
        sp, si = probs.sort(dim=-1, descending=True)
        drop = sp.cumsum(-1) - sp > top_p
        probs = probs.scatter(-1, si, sp.masked_fill(drop, 0.0))
    return [int(torch.multinomial(probs[b], 1, generator=row.gen)) for b, row in enumerate(rows)]


def _stack(kv_a, mask_a, kv_b, mask_b):
    """Two batches' caches as one: the shorter padded on the left (masked out)."""
    import torch
    import torch.nn.functional as F

    la, lb = mask_a.shape[1], mask_b.shape[1]
    n = max(la, lb)
    kv = [
        (
            torch.cat([F.pad(ka, (0, 0, n - la, 0)), F.pad(kb, (0, 0, n - lb, 0))]),
            torch.cat([F.pad(va, (0, 0, n - la, 0)), F.pad(vb, (0, 0, n - lb, 0))]),
        )
        for (ka, va), (kb, vb) in zip(kv_a, kv_b)
    ]
    return kv, torch.cat([F.pad(mask_a, (n - la, 0)), F.pad(mask_b, (n - lb, 0))])


def _trim(kv, mask):
    """Drop cache columns no remaining row attends to (left padding of rows that left), once
    they are a quarter of the cache: positions are explicit, so nothing shifts."""
    used = mask.bool().any(0)
    if int((~used).sum()) * 4 < mask.shape[1]:
        return kv, mask
    idx = used.nonzero().squeeze(1)
    return [(k[:, :, idx], v[:, :, idx]) for k, v in kv], mask[:, idx]
