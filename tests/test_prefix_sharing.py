"""Shared-prefix scoring (batch-wide and per-cluster) against a plain full forward pass per
request, on randomly generated contexts, labels and batch mixes (tiny random model)."""

import random

import pytest
import torch

from promptsearch.backends import GenRequest, LoglikRequest, TokenIds
from promptsearch.backends.batching import shared as _shared
from promptsearch.backends.hf import HFBackend

WORDS = "the a film plot was not great dull fun bright sad actor scene long short story ending music odd".split()
LABELS = [
    " (a)",
    " (b)",
    " (c)",
    " positive",
    " negative",
    " so-so really",
    " not the same",
    " same",
    " 4 - almost",
    " 4 - maybe",
]


def reference(backend, req):
    ctx, cont = backend.split_context(req)
    model = backend.model
    ids = torch.tensor([ctx + cont], device=model.device)
    with torch.no_grad():
        lsm = torch.log_softmax(model(ids).logits[0].float(), -1)
    return sum(lsm[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont))


def random_requests(rng: random.Random, tok) -> list[LoglikRequest]:
    instruction = " ".join(rng.choices(WORDS, k=rng.choice([0, 3, 20]))) + ("\n\n" if rng.random() < 0.7 else "")
    inputs = [" ".join(rng.choices(WORDS, k=rng.randint(1, 25))) for _ in range(rng.randint(1, 5))]
    triggers = [tuple(rng.choices(range(100, 5000), k=rng.randint(0, 4))) for _ in range(rng.randint(1, 6))]
    labels = rng.sample(LABELS, rng.randint(1, 4))
    reqs = []
    for x in inputs:
        for trig in triggers:
            head = f"{instruction}Review: {x}"
            ctx = (head, TokenIds(trig), " It was") if trig else head + " It was"
            reqs += [LoglikRequest(ctx, lab) for lab in labels]
    rng.shuffle(reqs)
    return reqs


@pytest.fixture(scope="module")
def backend(tiny_model):
    return HFBackend(str(tiny_model), batch_tokens=96)  # small batches: many cuts, clusters split


@pytest.mark.parametrize("seed", range(12))
def test_shared_prefix_paths_match_plain_forward(backend, seed):
    rng = random.Random(seed)
    reqs = random_requests(rng, backend.tokenizer)
    got = backend.loglikelihood(reqs)
    for r, g in zip(reqs, got):
        assert g.logprob == pytest.approx(reference(backend, r), abs=1e-4), r


def test_labels_that_share_first_tokens_do_not_crash(backend):
    # " (a)" and " (b)" share " (": a batch prefix must stop before the first read position
    ctx = "Question: which of the two options below is the better one, the first or the second?\nAnswer:"
    reqs = [LoglikRequest(ctx, " (a)"), LoglikRequest(ctx, " (b)")]
    for r, g in zip(reqs, backend.loglikelihood(reqs)):
        assert g.logprob == pytest.approx(reference(backend, r), abs=1e-4)


def test_many_candidates_on_one_input_run_the_input_once(backend):
    x = "an oddly long and winding story about a film that was not great but had bright music"
    triggers = [(100 + i, 200 + i) for i in range(8)]
    reqs = [LoglikRequest((f"Review: {x}", TokenIds(t), " It was"), lab) for t in triggers for lab in (" good", " bad")]
    plan = backend._plan(backend_rows(backend, reqs))
    n_input = len(backend.tokenizer(f"Review: {x}", add_special_tokens=False).input_ids) - 1
    assert all((min(cuts) if cuts else _shared(batch)) >= n_input for batch, cuts in plan)  # all reuse the input's KV
    for r, g in zip(reqs, backend.loglikelihood(reqs)):
        assert g.logprob == pytest.approx(reference(backend, r), abs=1e-4)


def backend_rows(backend, reqs):
    rows = []
    for i, r in enumerate(reqs):
        ctx, cont = backend.split_context(r)
        rows.append((ctx, [(i, len(ctx) - 1, cont[0])]))
    return rows


def test_sharing_modes_agree_and_clusters_run_fewest_tokens(tiny_model):
    """AutoPrompt's case: 12 triggers after each of 4 inputs. Per-input clusters, batch-wide
    sharing and no sharing give the same log-probabilities; clusters run the fewest tokens."""
    backend = HFBackend(str(tiny_model), batch_tokens=256)
    rng = random.Random(7)
    triggers = [tuple(rng.choices(range(300, 9000), k=5)) for _ in range(12)]
    inputs = [" ".join(rng.choices(WORDS, k=20)) for _ in range(4)]
    reqs = [
        LoglikRequest((f"Review: {x}", TokenIds(t), "\nSentiment:"), w)
        for t in triggers
        for x in inputs
        for w in (" negative", " positive")
    ]
    out, ran = {}, {}
    for mode in ("none", "batch", "clusters"):
        backend.sharing, backend.tokens_run = mode, 0
        backend._prefix_cache.clear()
        out[mode] = [r.logprob for r in backend.loglikelihood(reqs)]
        ran[mode] = backend.tokens_run
    for mode in ("batch", "clusters"):
        assert max(abs(a - b) for a, b in zip(out[mode], out["none"])) < 1e-4
    assert ran["clusters"] < ran["batch"] <= ran["none"] and ran["clusters"] * 2 < ran["none"]


@pytest.mark.parametrize("arch", ["gemma2", "cohere", "granite"])
def test_models_that_scale_or_cap_their_logits(tmp_path, embedded_folder, arch):
    """The backend runs base model and head apart: final logit soft-capping (Gemma 2, whose
    sliding-window layers also take the generation cache's other path), Cohere's logit scale
    and Granite's logit scaling must give what the model's own forward gives."""
    import transformers
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_folder)
    common = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
    )
    cls, extra = {
        "gemma2": ("Gemma2", dict(head_dim=8, final_logit_softcapping=0.5, sliding_window=4)),
        "cohere": ("Cohere", dict(logit_scale=4.0)),
        "granite": ("Granite", dict(logits_scaling=0.25)),
    }[arch]
    torch.manual_seed(0)
    model = getattr(transformers, f"{cls}ForCausalLM")(getattr(transformers, f"{cls}Config")(**common, **extra))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    b = HFBackend(str(tmp_path), batch_tokens=96)
    reqs = random_requests(random.Random(1), b.tokenizer)
    for r, g in zip(reqs, b.loglikelihood(reqs)):
        assert g.logprob == pytest.approx(reference(b, r), abs=1e-4), r
    gens = [GenRequest(f"Review: {w} film, long and odd", max_new_tokens=8) for w in WORDS[:4]]
    for r, g in zip(gens, b.generate(gens)):
        ids = torch.tensor([b.encode_prompt(r.prompt)])
        out = b.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=8,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=sorted(b.eos_ids),
        )
        assert g.text == b.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def test_a_soft_prompts_keys_and_values_are_run_once_per_scoring_and_score_the_same(tiny_model):
    """Prompt tuning's virtual tokens: their KV is computed once and reused by every batch
    of a scoring; the log-probabilities are those of the full forward with the vectors in
    front (sharing "none")."""
    import torch

    from promptsearch.backends.base import SoftPrompt

    backend = HFBackend(str(tiny_model), batch_tokens=96)
    torch.manual_seed(0)
    sp = SoftPrompt(vectors=torch.randn(6, backend.model.config.hidden_size) * 0.05)
    rng = random.Random(3)
    reqs = [
        LoglikRequest(f"Review: {' '.join(rng.choices(WORDS, k=12))}\nSentiment:", w)
        for _ in range(20)
        for w in (" negative", " positive")
    ]
    out, ran = {}, {}
    for mode in ("none", "clusters"):
        backend.sharing, backend.tokens_run = mode, 0
        backend._soft_kv_memo = None
        out[mode] = [r.logprob for r in backend.loglikelihood(reqs, soft_prompt=sp)]
        ran[mode] = backend.tokens_run
    assert max(abs(a - b) for a, b in zip(out["clusters"], out["none"])) < 1e-4
    assert ran["clusters"] == ran["none"] + 6  # the 6 virtual tokens once, not once per batch row


def test_short_inputs_under_many_triggers_score_as_run_in_full(backend):
    reqs = [
        LoglikRequest((f"Review: {x}", TokenIds((300 + i, 400 + i, 500 + i)), " It was"), lab)
        for x in ("fun", "dull film")
        for i in range(10)
        for lab in (" good", " bad")
    ]
    backend._prefix_cache.clear()
    for r, g in zip(reqs, backend.loglikelihood(reqs)):
        assert g.logprob == pytest.approx(reference(backend, r), abs=1e-4)
