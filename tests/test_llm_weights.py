"""Offline weights: GGUF (with llama.cpp's Q/K row permutation) and Hugging Face safetensors folders."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from llm_utils import permute_llama_cpp, tiny_vocab, write_gguf

from murphyjax.llm import LlamaConfig, forward, init, load_pretrained, save_hf
from murphyjax.llm.weights import model_to_arrays, permute_qk, read_safetensors, unpermute_qk

VOCAB = len(tiny_vocab()[0])
CFG = LlamaConfig.tiny(vocab_size=VOCAB)
IDS = jax.random.randint(jax.random.key(0), (2, 9), 0, VOCAB, jnp.int32)


@pytest.fixture(scope="module")
def model():
    return init(CFG, seed=3)


def test_qk_permutation_written_out():
    # one head of dim 4: llama.cpp interleaves the two halves [0 1 | 2 3] -> [0 2 1 3]
    w = np.arange(4.0)[:, None]
    assert permute_qk(w, 1)[:, 0].tolist() == [0, 2, 1, 3]
    assert unpermute_qk(np.array([[0.0], [2], [1], [3]]), 1)[:, 0].tolist() == [0, 1, 2, 3]
    w = np.random.default_rng(0).normal(size=(3 * 8, 5))
    np.testing.assert_array_equal(permute_qk(w, 3), permute_llama_cpp(w, 3))
    np.testing.assert_array_equal(unpermute_qk(permute_qk(w, 3), 3), w)


@pytest.mark.parametrize("tied", [True, False])
def test_gguf_round_trip_gives_identical_logits(tmp_path, tied):
    cfg = LlamaConfig.tiny(vocab_size=VOCAB, tie_embeddings=tied)
    m = init(cfg, seed=4)
    path = tmp_path / "tiny.gguf"
    write_gguf(path, model_to_arrays(m), cfg)
    loaded, tok = load_pretrained(path)
    assert loaded.config == cfg
    np.testing.assert_array_equal(forward(loaded, IDS), forward(m, IDS))
    assert tok.decode(tok("hello world")["input_ids"]) == "hello world"


def test_quantized_gguf_is_dequantized(tmp_path, model):
    path = tmp_path / "q8.gguf"
    write_gguf(path, model_to_arrays(model), CFG, qtype="Q8_0")
    loaded, _ = load_pretrained(path)
    # Q8_0: blocks of 32 inputs share a scale d = max|w|/127 stored in float16, so each weight moves by
    # at most d/2 + 127 d 2^-11 < 0.6 d (a wrong Q/K row order would move weights by O(|w|)).
    for name, w in model_to_arrays(model).items():
        got = model_to_arrays(loaded)[name]
        if w.ndim == 2:
            step = np.abs(w.reshape(w.shape[0], -1, 32)).max(-1, keepdims=True) / 127
            assert (np.abs(got - w).reshape(step.shape[0], -1, 32) <= 0.6 * step).all(), name
            assert np.abs(got - w).max() > 0, name
        else:
            np.testing.assert_array_equal(got, w)  # norms stay float32


def test_hf_folder_round_trip(tmp_path, model):
    save_hf(model, tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["num_key_value_heads"] == CFG.num_kv_heads
    loaded, tok = load_pretrained(tmp_path / "hf")
    assert tok is None and loaded.config == CFG
    np.testing.assert_array_equal(forward(loaded, IDS), forward(model, IDS))
    names = read_safetensors(tmp_path / "hf" / "model.safetensors")
    assert "lm_head.weight" not in names and names["model.layers.1.self_attn.k_proj.weight"].shape == (32, 64)
    # into the per-layer layout and back out: the same weights, the same logits, the same file
    per_layer, _ = load_pretrained(tmp_path / "hf", scan_layers=False)
    assert per_layer.blocks.layers[1].wqkv[...].shape == model.blocks.wqkv[...].shape[1:]
    np.testing.assert_array_equal(per_layer.blocks.arrays()["w_down"], model.blocks.w_down[...])
    np.testing.assert_allclose(forward(per_layer, IDS), forward(model, IDS), atol=2e-5)
    save_hf(per_layer, tmp_path / "hf2")
    again = read_safetensors(tmp_path / "hf2" / "model.safetensors")
    assert again.keys() == names.keys() and all(np.array_equal(again[k], names[k]) for k in names)


def test_hf_folder_in_bfloat16_with_tokenizer(tmp_path, model):
    from safetensors.flax import save_file

    from murphyjax.llm.tokenizer import build_bpe_tokenizer

    save_hf(model, tmp_path / "bf16")
    arrays = read_safetensors(tmp_path / "bf16" / "model.safetensors")
    save_file({k: jnp.asarray(v, jnp.bfloat16) for k, v in arrays.items()}, str(tmp_path / "bf16" / "model.safetensors"))
    tokens, types, merges = tiny_vocab()
    build_bpe_tokenizer(tokens, merges, types, eos_id=2, pad_id=0).save_pretrained(str(tmp_path / "bf16"))
    loaded, tok = load_pretrained(tmp_path / "bf16")
    w = loaded.blocks.arrays()["wqkv"]
    assert w.dtype == jnp.float32
    np.testing.assert_array_equal(w, model.blocks.arrays()["wqkv"].astype(jnp.bfloat16).astype(jnp.float32))
    assert tok("hello")["input_ids"] == [tokens.index("hello")]


@pytest.mark.parametrize("patch, msg", [({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope scaling"),
                                        ({"model_type": "qwen2"}, "model_type"),
                                        ({"attention_bias": True}, "bias")])
def test_unsupported_hf_configs_are_refused(tmp_path, model, patch, msg):
    save_hf(model, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.pop("rope_parameters")
    (tmp_path / "config.json").write_text(json.dumps({**cfg, **patch}))
    with pytest.raises(ValueError, match=msg):
        load_pretrained(tmp_path)


def test_pickle_checkpoints_and_bad_paths_are_refused(tmp_path, model):
    save_hf(model, tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="never loaded"):
        load_pretrained(tmp_path)
    with pytest.raises(ValueError, match="expected a .gguf file"):
        load_pretrained(tmp_path / "nope.gguf")
