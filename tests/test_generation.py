"""Continuous-batching generation against a plain one-request-at-a-time decoder, on random
prompt mixes with shared prefixes, rows that finish at different steps and few slots (so rows
join and leave the batch), and against transformers' own generate."""

import random

import pytest
import torch

from promptsearch.backends import GenRequest, TokenIds
from promptsearch.backends.hf import HFBackend

WORDS = "the a film plot was not great dull fun bright sad actor scene long short story ending music odd".split()


def reference(backend, req):
    """Greedy decoding of one request, the whole sequence re-run at every step (no cache)."""
    tok, model = backend.tokenizer, backend.model
    ids = backend.encode_prompt(req.prompt)
    new: list[int] = []
    with torch.no_grad():
        for _ in range(req.max_new_tokens):
            t = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())
            if t in backend.eos_ids:
                break
            new.append(t)
            if any(s in tok.decode(new, skip_special_tokens=True) for s in req.stop):
                break
    text = tok.decode(new, skip_special_tokens=True)
    for s in req.stop:
        text = text.split(s)[0] if s in text else text
    return text, len(new)


def random_requests(rng: random.Random, **kw) -> list[GenRequest]:
    instruction = " ".join(rng.choices(WORDS, k=rng.choice([0, 4, 30]))) + "\n"
    reqs = []
    for _ in range(rng.randint(1, 12)):
        x = " ".join(rng.choices(WORDS, k=rng.randint(1, 20)))
        trig = tuple(rng.choices(range(100, 5000), k=rng.randint(0, 3)))
        prompt = (
            (f"{instruction}Input: {x}", TokenIds(trig), "\nOutput:") if trig else f"{instruction}Input: {x}\nOutput:"
        )
        reqs.append(
            GenRequest(prompt, max_new_tokens=rng.choice([1, 4, 12]), stop=rng.choice([(), ("\n",), ("e",)]), **kw)
        )
    return reqs


@pytest.fixture(scope="module")
def backend(tiny_model):
    b = HFBackend(str(tiny_model))
    b.gen_slots = 3  # few slots: rows join and leave the batch all the time
    return b


@pytest.mark.parametrize("seed", range(8))
def test_greedy_matches_one_request_at_a_time(backend, seed):
    reqs = random_requests(random.Random(seed))
    for r, g in zip(reqs, backend.generate(reqs)):
        text, n = reference(backend, r)
        assert (g.text, g.completion_tokens) == (text, n), r


def test_greedy_matches_transformers_generate(backend):
    tok, model = backend.tokenizer, backend.model
    reqs = random_requests(random.Random(99))
    reqs = [GenRequest(r.prompt, max_new_tokens=10, stop=()) for r in reqs]
    for r, g in zip(reqs, backend.generate(reqs)):
        ids = torch.tensor([backend.encode_prompt(r.prompt)])
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=10,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=sorted(backend.eos_ids),
        )
        assert g.text == tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def test_finished_rows_leave_the_batch(tiny_model):
    b = HFBackend(str(tiny_model))
    b.gen_slots = 8
    shared = "the film was long and the plot was odd and the ending was sad " * 2
    quick = [GenRequest(f"{shared}Input: {w}", max_new_tokens=1, stop=()) for w in WORDS[:7]]
    slow = [GenRequest(f"{shared}Input: slow", max_new_tokens=40, stop=())]
    b.generate(quick + slow)
    prompt_len = len(b.encode_prompt(slow[0].prompt))
    shared_len = len(b.encode_prompt(shared)) - 1
    # the seven one-token rows leave after their first pick: 39 steps of one row, and the
    # shared prefix ran once, not eight times
    assert b.tokens_run <= shared_len + 8 * (prompt_len - shared_len + 2) + 39
    assert sum(g.completion_tokens for g in b.generate(quick + slow)) == 7 + 40


def test_samples_do_not_depend_on_batch_mates(tiny_model):
    reqs = random_requests(random.Random(5), temperature=0.8, top_p=0.9, seed=3)
    alone = []
    for r in reqs:
        alone += HFBackend(str(tiny_model), gen_slots=1).generate([r])
    for slots in (2, 64):
        got = HFBackend(str(tiny_model), gen_slots=slots).generate(reqs)
        assert [g.text for g in got] == [g.text for g in alone]
    other = HFBackend(str(tiny_model)).generate(
        [GenRequest(r.prompt, r.max_new_tokens, 0.8, 0.9, r.stop, seed=4) for r in reqs]
    )
    assert [g.text for g in other] != [g.text for g in alone]  # the seed matters


def test_samples_of_one_prompt_prefill_once(tiny_model):
    prompts = [f"Input: {(w + ' ') * 12}" for w in WORDS[:3]]
    reqs = [GenRequest(p, 6, 0.9, 1.0, (), seed=1, sample_index=i) for p in prompts for i in range(4)]
    one = HFBackend(str(tiny_model), gen_slots=1)
    alone = [one.generate([r])[0].text for r in reqs]
    b = HFBackend(str(tiny_model), gen_slots=64)
    assert [g.text for g in b.generate(reqs)] == alone
    assert len(set(alone)) > 3  # the samples of one prompt differ
    longest = max(len(b.encode_prompt(p)) for p in prompts)
    assert b.tokens_run <= 3 * longest + 12 * 6 < 12 * longest  # three prefills, not twelve


def test_embedded_model_greedy_matches_transformers_generate(embedded_folder, shared_data):
    import json

    data = json.loads((shared_data / "instruction_induction" / "execute" / "antonyms.json").read_text())["examples"]
    b = HFBackend(str(embedded_folder))
    b.gen_slots = 6
    reqs = [
        GenRequest(f"Write the antonym of the word.\n\nInput: {e['input']}\nOutput:", max_new_tokens=8, stop=("\n",))
        for e in list(data.values())[:8]
    ]
    tok, model = b.tokenizer, b.model
    for r, g in zip(reqs, b.generate(reqs)):
        ids = torch.tensor([b.encode_prompt(r.prompt)])
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=8,
            do_sample=False,
            stop_strings=["\n"],
            tokenizer=tok,
            pad_token_id=tok.pad_token_id,
        )
        assert g.text == tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).split("\n")[0]


def test_gen_slots_setting_reaches_the_backend(tiny_model, monkeypatch):
    from promptsearch.backends.hf import load_hf
    from promptsearch.errors import PromptSearchError
    from promptsearch.settings import get_settings

    monkeypatch.setenv("PROMPTSEARCH_GEN_SLOTS", "5")
    b = load_hf(str(tiny_model), get_settings())
    b.generate([GenRequest("Input: the film", max_new_tokens=2)])  # loads the model: the setting survives it
    assert b.gen_slots == 5
    monkeypatch.setenv("PROMPTSEARCH_GEN_SLOTS", "many")
    with pytest.raises(PromptSearchError, match="PROMPTSEARCH_GEN_SLOTS='many' must be a positive whole number"):
        get_settings()
