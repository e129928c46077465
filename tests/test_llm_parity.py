"""Parity with transformers' PyTorch LlamaForCausalLM (the `parity` extra).

The torch side runs in a subprocess: ``sys.executable`` when it has torch, else the interpreter named by
``MURPHYJAX_TORCH_PYTHON`` (e.g. a separate venv with ``pip install murphyjax[parity]``'s torch); the
test is skipped when neither exists.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from murphyjax.llm import forward, load_pretrained, save_hf


def _torch_python():
    if importlib.util.find_spec("torch") is not None:
        return sys.executable
    return os.environ.get("MURPHYJAX_TORCH_PYTHON")


TORCH = _torch_python()
pytestmark = pytest.mark.skipif(not TORCH, reason="torch is absent (install the 'parity' extra or set "
                                                  "MURPHYJAX_TORCH_PYTHON to a Python that has torch)")

SCRIPT = textwrap.dedent('''
    import sys, numpy as np, torch
    from transformers import LlamaConfig, LlamaForCausalLM
    mode, folder, tied = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    torch.manual_seed(0)
    ids = torch.tensor(np.load(folder + "/ids.npy"))
    if mode == "make":
        cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
                          rope_parameters={"rope_type": "default", "rope_theta": 5000.0},
                          tie_word_embeddings=tied, max_position_embeddings=128)
        model = LlamaForCausalLM(cfg).eval()
        with torch.no_grad():  # non-trivial norm weights too
            for n, p in model.named_parameters():
                if "norm" in n:
                    p.add_(0.1 * torch.randn_like(p))
        model.save_pretrained(folder + "/hf", safe_serialization=True)
    else:
        model = LlamaForCausalLM.from_pretrained(folder + "/hf").eval()
    with torch.no_grad():
        np.save(folder + "/logits.npy", model(ids).logits.float().numpy())
''')


def _torch(mode, folder, tied):
    r = subprocess.run([TORCH, "-c", SCRIPT, mode, str(folder), "1" if tied else "0"], capture_output=True,
                       text=True, timeout=600, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 0, r.stderr[-3000:]
    return np.load(folder / "logits.npy")


@pytest.mark.parametrize("tied", [False, True])
def test_transformers_llama_logits_match(tmp_path, tied):
    ids = np.random.default_rng(0).integers(0, 300, (2, 17))
    np.save(tmp_path / "ids.npy", ids)
    ref = _torch("make", tmp_path, tied)
    model, tok = load_pretrained(tmp_path / "hf")
    assert tok is None and model.config.tie_embeddings == tied and model.config.rope_theta == 5000.0
    ours = np.asarray(forward(model, jnp.asarray(ids, jnp.int32)))
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    # and back: our HF export loads in transformers with the same logits
    save_hf(model, tmp_path / "hf")
    np.testing.assert_allclose(_torch("score", tmp_path, tied), ours, atol=1e-4, rtol=0)
