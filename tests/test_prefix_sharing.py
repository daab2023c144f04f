"""Shared-prefix scoring (batch-wide and per-cluster) against a plain full forward pass per
request, on randomly generated contexts, labels and batch mixes (tiny random model)."""

import random

import pytest
import torch

from promptsearch.backends import LoglikRequest, TokenIds
from promptsearch.backends.hf import HFBackend, _shared

WORDS = "the a film plot was not great dull fun bright sad actor scene long short story ending music odd".split()
LABELS = [" (a)", " (b)", " (c)", " positive", " negative", " so-so really", " not the same", " same", " 4 - almost", " 4 - maybe"]


def reference(backend, req):
    ctx, cont = backend._split_context(req)
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
    assert all(_shared(batch) >= len(backend.tokenizer(f"Review: {x}", add_special_tokens=False).input_ids) - 1
               for batch in plan)  # every batch reuses the input's KV
    for r, g in zip(reqs, backend.loglikelihood(reqs)):
        assert g.logprob == pytest.approx(reference(backend, r), abs=1e-4)


def backend_rows(backend, reqs):
    rows = []
    for i, r in enumerate(reqs):
        ctx, cont = backend._split_context(r)
        rows.append((ctx, [(i, len(ctx) - 1, cont[0])]))
    return rows


def test_sharing_modes_agree_and_clusters_run_fewest_tokens(tiny_model):
    """AutoPrompt's case: 12 triggers after each of 4 inputs. Per-input clusters, batch-wide
    sharing and no sharing give the same log-probabilities; clusters run the fewest tokens."""
    backend = HFBackend(str(tiny_model), batch_tokens=256)
    rng = random.Random(7)
    triggers = [tuple(rng.choices(range(300, 9000), k=5)) for _ in range(12)]
    inputs = [" ".join(rng.choices(WORDS, k=20)) for _ in range(4)]
    reqs = [LoglikRequest((f"Review: {x}", TokenIds(t), "\nSentiment:"), w)
            for t in triggers for x in inputs for w in (" negative", " positive")]
    out, ran = {}, {}
    for mode in ("none", "batch", "clusters"):
        backend.sharing, backend.tokens_run = mode, 0
        backend._prefix_cache.clear()
        out[mode] = [r.logprob for r in backend.loglikelihood(reqs)]
        ran[mode] = backend.tokens_run
    for mode in ("batch", "clusters"):
        assert max(abs(a - b) for a, b in zip(out[mode], out["none"])) < 1e-4
    assert ran["clusters"] < ran["batch"] <= ran["none"] and ran["clusters"] * 2 < ran["none"]
