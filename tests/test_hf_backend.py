"""The transformers backend on a tiny random-weight model: batching, the shared-prefix KV
path, token-id segments and soft prompts must give what a plain full forward pass gives."""

import pytest
import torch
from clitools import invoke, one_line_error

from promptsearch.backends import GenRequest, LoglikRequest, SoftPrompt, TokenIds, resolve_backend
from promptsearch.backends.hf import HFBackend
from promptsearch.errors import PromptSearchError


def reference_logprob(model, tok, context_ids, cont_ids):
    ids = torch.tensor([context_ids + cont_ids], device=model.device)
    with torch.no_grad():
        lsm = torch.log_softmax(model(ids).logits[0].float(), -1)
    return sum(lsm[len(context_ids) - 1 + j, t].item() for j, t in enumerate(cont_ids))


@pytest.fixture(scope="module")
def backend(tiny_model):
    return HFBackend(str(tiny_model), batch_tokens=256)


def test_batched_prefix_shared_scores_match_full_forward(backend):
    prefix = "Decide whether each review below is positive or negative, reading it closely.\n\n"
    inputs = ["a fine film", "dull", "not what I hoped for at all, sadly", "great fun for the whole family"]
    reqs = [
        LoglikRequest(prefix + f"Review: {x}\nSentiment:", c)
        for x in inputs
        for c in (" negative", " positive", " so-so really")
    ]
    got = backend.loglikelihood(reqs)
    tok, model = backend.tokenizer, backend.model
    for r, g in zip(reqs, got):
        ctx = tok(r.context, add_special_tokens=False).input_ids
        whole = tok(r.context + r.continuation, add_special_tokens=False).input_ids
        assert g.logprob == pytest.approx(reference_logprob(model, tok, ctx, whole[len(ctx) :]), abs=1e-4)
        assert g.n_tokens == len(whole)
    assert len(backend._prefix_cache) >= 1  # the shared prefix really was reused


def test_token_id_segments_and_soft_prompts(backend):
    tok, model = backend.tokenizer, backend.model
    trig = tuple(tok(" zebra kettle", add_special_tokens=False).input_ids)
    req = LoglikRequest(("Review: ok", TokenIds(trig), "\nSentiment:"), " positive")
    ctx = (
        tok("Review: ok", add_special_tokens=False).input_ids
        + list(trig)
        + tok("\nSentiment:", add_special_tokens=False).input_ids
    )
    cont = tok(" positive", add_special_tokens=False).input_ids
    assert backend.loglikelihood([req])[0].logprob == pytest.approx(reference_logprob(model, tok, ctx, cont), abs=1e-4)

    vec = torch.randn(3, model.config.hidden_size) * 0.1
    plain = LoglikRequest("Review: ok\nSentiment:", " positive")
    got = backend.loglikelihood([plain, plain], soft_prompt=SoftPrompt(vec))[0].logprob
    ids = tok(plain.context, add_special_tokens=False).input_ids
    cont = tok(plain.context + plain.continuation, add_special_tokens=False).input_ids[len(ids) :]
    dev = model.device
    emb = torch.cat([vec.to(dev), model.get_input_embeddings()(torch.tensor(ids + cont[:-1], device=dev))])[None]
    with torch.no_grad():
        lsm = torch.log_softmax(model(inputs_embeds=emb).logits[0].float(), -1)
    ref = sum(lsm[3 + len(ids) - 1 + j, t].item() for j, t in enumerate(cont))
    assert got == pytest.approx(ref, abs=1e-4)
    assert got != pytest.approx(backend.loglikelihood([plain])[0].logprob, abs=1e-6)


def test_greedy_generation_is_batched_and_deterministic(backend):
    reqs = [GenRequest("Input: 1 2\nOutput:", max_new_tokens=6, stop=()), GenRequest("Hi", max_new_tokens=4, stop=())]
    a, b = backend.generate(reqs), backend.generate(list(reversed(reqs)))
    assert [r.text for r in a] == [r.text for r in reversed(b)]
    single = backend.generate(reqs[:1])[0]
    assert single.text == a[0].text and single.n_tokens > 0


def test_long_inputs_are_left_truncated(backend):
    long = "word " * 400  # longer than the tiny model's 128 positions
    r = backend.loglikelihood([LoglikRequest(long + "\nSentiment:", " positive")])[0]
    assert r.logprob < 0


def test_model_paths_that_are_not_models(tmp_path):
    with pytest.raises(PromptSearchError, match="not a model: no config.json"):
        resolve_backend(f"hf:{tmp_path}")
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(PromptSearchError, match="config.json is not valid JSON"):
        resolve_backend(f"hf:{tmp_path}")
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    b = resolve_backend(f"hf:{tmp_path}")  # loads lazily: the error comes on first use, as one line
    with pytest.raises(PromptSearchError, match="Cannot load model"):
        b.loglikelihood([LoglikRequest("a", " b")])
    with pytest.raises(PromptSearchError, match="Unknown backend 'hff'"):
        resolve_backend("hff:x")


def test_bad_device_and_bad_model_folder_are_one_line(tmp_path):
    assert "PROMPTSEARCH_DEVICE='gpu' is not a device" in one_line_error(
        invoke("eval", "--prompt", "x", "--limit", "1", env={"PROMPTSEARCH_DEVICE": "gpu"})
    )
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    err = one_line_error(invoke("eval", "--model", f"hf:{folder}", "--limit", "1"))
    assert "Cannot load model" in err and not err.rstrip().endswith(":")


def test_unreachable_hub_is_one_quiet_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = one_line_error(invoke("eval", "--model", "hf:SomeOrg/not-cached-model", "--limit", "1"))
    assert "not in the local Hugging Face cache" in err


def test_scoring_and_generation_print_no_deprecation_warnings(tiny_model, capfd):
    import warnings

    from promptsearch.backends import GenRequest, LoglikRequest
    from promptsearch.backends.hf import HFBackend

    b = HFBackend(str(tiny_model))
    head = "A long shared instruction that every row of this batch starts with, word for word.\n\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        b.loglikelihood([LoglikRequest(head + f"Review: {x}\nSentiment:", " good") for x in ("a", "b c", "d e f")])
        b.generate([GenRequest("Hi", 3, stop=()), GenRequest("Hi", 3, temperature=0.7, stop=())])
    assert "deprecated" not in capfd.readouterr().err


def test_a_sample_depends_only_on_its_own_request(tiny_model):
    from promptsearch.backends import GenRequest
    from promptsearch.backends.hf import HFBackend

    b = HFBackend(str(tiny_model))
    mine = [GenRequest("Tell me a story", 8, temperature=1.0, stop=(), sample_index=i, seed=3) for i in range(3)]
    others = [GenRequest("A much longer and different prompt to share the batch", 8, temperature=1.0, stop=())]
    alone = [r.text for r in b.generate(mine)]
    mixed = [r.text for r in b.generate(others + mine[::-1])][1:][::-1]
    single = b.generate(mine[1:2])[0].text
    assert alone == mixed and single == alone[1]
    assert len(set(alone)) > 1  # different sample indices do sample differently
