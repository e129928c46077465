"""Pretrained weights, offline: GGUF files (llama.cpp) and Hugging Face folders (safetensors). Never pickle.

Both formats are read into one canonical form, Hugging Face's tensor names with (out, in) matrices,
then stacked into the model's (L, in, out) layout. GGUF specifics:

* ggml lists dimensions innermost first; the ``gguf`` reader already returns numpy (out, in) arrays,
  and ``gguf.quants.dequantize`` expands quantized blocks (Q4_1, Q8_0, ...) to float32.
* llama.cpp's converter permutes the rows of W_q and W_k from HF's rotate-half RoPE layout to the
  interleaved-pairs layout, ``w.reshape(n, 2, hd/2, d).swapaxes(1, 2)`` per head; it is undone here with
  ``w.reshape(n, hd/2, 2, d).swapaxes(1, 2)`` (n = query heads for Q, KV heads for K).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from murphyjax.llm.model import Llama, LlamaConfig, fuse_qkv, split_qkv

# canonical per-layer HF names for the stacked Blocks fields
_HF_LAYER = {
    "attn_norm": "input_layernorm.weight", "wq": "self_attn.q_proj.weight", "wk": "self_attn.k_proj.weight",
    "wv": "self_attn.v_proj.weight", "wo": "self_attn.o_proj.weight", "mlp_norm": "post_attention_layernorm.weight",
    "w_gate": "mlp.gate_proj.weight", "w_up": "mlp.up_proj.weight", "w_down": "mlp.down_proj.weight",
}
_GGUF_LAYER = {
    "attn_norm": "attn_norm.weight", "wq": "attn_q.weight", "wk": "attn_k.weight", "wv": "attn_v.weight",
    "wo": "attn_output.weight", "mlp_norm": "ffn_norm.weight", "w_gate": "ffn_gate.weight",
    "w_up": "ffn_up.weight", "w_down": "ffn_down.weight",
}


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotate-half rows -> llama.cpp interleaved rows (what ``convert_hf_to_gguf.py`` writes)."""
    d_out = w.shape[0]
    return w.reshape(n_head, 2, d_out // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of ``permute_qk``: llama.cpp rows -> HF rotate-half rows."""
    d_out = w.shape[0]
    return w.reshape(n_head, d_out // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def model_from_arrays(cfg: LlamaConfig, get) -> Llama:
    """Build a ``Llama`` from HF-named (out, in) arrays; ``get(name)`` returns one as numpy.

    Avoids a random initialisation: the module is created abstractly and filled in.
    """
    pd = jnp.dtype(cfg.param_dtype)

    def arr(x, transpose=False):
        x = np.asarray(x, np.float32)
        return jnp.asarray(x.T if transpose else x, pd)

    sep = {}
    for field, name in _HF_LAYER.items():
        mats = [np.asarray(get(f"model.layers.{i}.{name}"), np.float32) for i in range(cfg.num_layers)]
        sep[field] = np.stack([m.T if m.ndim == 2 else m for m in mats])
    if sep["wq"].shape[1:] != (cfg.hidden_size, cfg.num_heads * cfg.head_dim) or \
            any(sep[n].shape[1:] != (cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim) for n in ("wk", "wv")):
        raise ValueError(f"weights do not match the config: q/k/v projections {[sep[n].shape for n in ('wq', 'wk', 'wv')]}")
    sep["wqkv"] = fuse_qkv(sep.pop("wq"), sep.pop("wk"), sep.pop("wv"), cfg.num_kv_heads, cfg.head_dim, xp=np)
    sep["w_gate_up"] = np.stack([sep.pop("w_gate"), sep.pop("w_up")], -2)
    blocks = {k: arr(v) for k, v in sep.items()}
    if not cfg.scan_layers:  # the per-layer layout: blocks/layers/i/...
        blocks = {"layers": {i: {k: v[i] for k, v in blocks.items()} for i in range(cfg.num_layers)}}
    pure = {"embed": arr(get("model.embed_tokens.weight")), "blocks": blocks,
            "final_norm": arr(get("model.norm.weight"))}
    if not cfg.tie_embeddings:
        pure["lm_head"] = arr(get("lm_head.weight"), transpose=True)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Llama(cfg, rngs=nnx.Rngs(0))))
    expected = _flatten(nnx.to_pure_dict(state))
    got = _flatten(pure)
    if expected != got:
        bad = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
        raise ValueError(f"weights do not match the config at {bad[:4]}: expected "
                         f"{[expected.get(k) for k in bad[:4]]}, got {[got.get(k) for k in bad[:4]]}")
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)


def _flatten(d, prefix=()):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = tuple(v.shape)
    return out


def model_to_arrays(model: Llama) -> dict[str, np.ndarray]:
    """The model's weights as HF-named float32 (out, in) numpy arrays (inverse of ``model_from_arrays``)."""
    cfg = model.config
    out = {"model.embed_tokens.weight": np.asarray(model.embed[...], np.float32),
           "model.norm.weight": np.asarray(model.final_norm[...], np.float32)}
    stacked = {n: np.asarray(w, np.float32) for n, w in model.blocks.arrays().items()}
    sep = {n: stacked[n] for n in ("attn_norm", "wo", "mlp_norm", "w_down")}
    sep["wq"], sep["wk"], sep["wv"] = split_qkv(stacked["wqkv"], cfg.num_heads)
    gate_up = stacked["w_gate_up"]
    sep["w_gate"], sep["w_up"] = gate_up[..., 0, :], gate_up[..., 1, :]
    for field, name in _HF_LAYER.items():
        stacked = sep[field]
        for i in range(cfg.num_layers):
            out[f"model.layers.{i}.{name}"] = stacked[i].T if stacked.ndim == 3 else stacked[i]
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = np.asarray(model.lm_head[...], np.float32).T
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


# ---------------------------------------------------------------- GGUF

def _field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def _f32(x) -> float:
    # GGUF stores float32: take the shortest decimal that round-trips it (1e-05, not 9.99999974e-06)
    return float(str(np.float32(x)))


def config_from_gguf(reader, **overrides) -> LlamaConfig:
    """LlamaConfig from GGUF metadata (architecture ``llama``)."""
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"GGUF architecture {arch!r} is not supported (only 'llama')")
    a = lambda k, d=None: _field(reader, f"llama.{k}", d)  # noqa: E731
    d, heads = int(a("embedding_length")), int(a("attention.head_count"))
    if a("rope.scaling.type") not in (None, "none"):
        raise ValueError(f"rope scaling {a('rope.scaling.type')!r} is not supported")
    names = {t.name for t in reader.tensors}
    emb = next(t for t in reader.tensors if t.name == "token_embd.weight")
    return LlamaConfig(**{**dict(
        vocab_size=int(emb.shape[1]), hidden_size=d, intermediate_size=int(a("feed_forward_length")),
        num_layers=int(a("block_count")), num_heads=heads,
        num_kv_heads=int(a("attention.head_count_kv", heads)),
        head_dim=int(a("attention.key_length", a("rope.dimension_count", d // heads))),
        rope_theta=_f32(a("rope.freq_base", 10000.0)), rms_norm_eps=_f32(a("attention.layer_norm_rms_epsilon", 1e-5)),
        tie_embeddings="output.weight" not in names, max_seq_len=int(a("context_length", 8192))), **overrides})


def load_gguf(path: str | os.PathLike, **overrides) -> tuple[Llama, object]:
    """Model and tokenizer from a GGUF file (any ``gguf``-dequantizable tensor type)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from murphyjax.llm.tokenizer import tokenizer_from_gguf

    reader = GGUFReader(str(path))
    cfg = config_from_gguf(reader, **overrides)
    tensors = {t.name: t for t in reader.tensors}
    hf_to_gguf = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                  "lm_head.weight": "output.weight"}
    for i in range(cfg.num_layers):
        for field, name in _HF_LAYER.items():
            hf_to_gguf[f"model.layers.{i}.{name}"] = f"blk.{i}.{_GGUF_LAYER[field]}"

    def get(name):
        t = tensors[hf_to_gguf[name]]
        w = dequantize(t.data, t.tensor_type).reshape(tuple(int(s) for s in reversed(t.shape)))
        if name.endswith("q_proj.weight"):
            w = unpermute_qk(w, cfg.num_heads)
        elif name.endswith("k_proj.weight"):
            w = unpermute_qk(w, cfg.num_kv_heads)
        return w

    return model_from_arrays(cfg, get), tokenizer_from_gguf(reader)


# ---------------------------------------------------------------- Hugging Face folders

_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Memory-mapped numpy views of a .safetensors file (bfloat16 via ml_dtypes; no torch, no pickle)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    data = np.memmap(path, np.uint8, "r", offset=8 + n)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = data[start:end].view(_ST_DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def config_from_hf(cfg: dict, **overrides) -> LlamaConfig:
    """LlamaConfig from a Hugging Face ``config.json`` dict (model_type llama, no biases, no rope scaling)."""
    if cfg.get("model_type", "llama") != "llama":
        raise ValueError(f"model_type {cfg.get('model_type')!r} is not supported (only 'llama')")
    if cfg.get("attention_bias") or cfg.get("mlp_bias"):
        raise ValueError("attention_bias/mlp_bias checkpoints are not supported")
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ValueError(f"rope scaling {rope.get('rope_type', rope.get('type'))!r} is not supported")
    heads = cfg["num_attention_heads"]
    return LlamaConfig(**{**dict(
        vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
        num_layers=cfg["num_hidden_layers"], num_heads=heads, num_kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
        rope_theta=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)), tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        max_seq_len=int(cfg.get("max_position_embeddings", 8192))), **overrides})


def load_hf(folder: str | os.PathLike, **overrides) -> tuple[Llama, object]:
    """Model and tokenizer (None without tokenizer.json) from a Hugging Face-format folder."""
    folder = Path(folder)
    cfg = config_from_hf(json.loads((folder / "config.json").read_text()), **overrides)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ValueError(f"path: no *.safetensors in {folder} (pickled .bin checkpoints are never loaded)")
    tensors = {}
    for f in files:
        tensors.update(read_safetensors(f))
    model = model_from_arrays(cfg, lambda name: tensors[name])
    tokenizer = None
    if (folder / "tokenizer.json").exists():
        from transformers import PreTrainedTokenizerFast
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    return model, tokenizer


def save_hf(model: Llama, folder: str | os.PathLike, tokenizer=None) -> Path:
    """Write a Hugging Face ``LlamaForCausalLM``-compatible folder (config.json + model.safetensors)."""
    from safetensors.numpy import save_file

    cfg, folder = model.config, Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hf = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=cfg.vocab_size,
              hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
              num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
              num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, hidden_act="silu",
              rms_norm_eps=cfg.rms_norm_eps, rope_theta=cfg.rope_theta,
              rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
              tie_word_embeddings=cfg.tie_embeddings, max_position_embeddings=cfg.max_seq_len,
              attention_bias=False, mlp_bias=False, dtype="float32")
    (folder / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    save_file(model_to_arrays(model), str(folder / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    return folder


def load_pretrained(path: str | os.PathLike, **overrides) -> tuple[Llama, object]:
    """Load a Llama-family checkpoint offline: a ``.gguf`` file or a Hugging Face folder.

    Args:
      path: a GGUF file, or a folder with config.json, *.safetensors and optionally tokenizer.json.
      **overrides: ``LlamaConfig`` fields to change (e.g. ``dtype="bfloat16"``, ``scan_layers=False``).

    Returns:
      (model, tokenizer); tokenizer is a ``transformers.PreTrainedTokenizerFast`` (None for a folder
      without tokenizer.json). Weights are float32 (``param_dtype``) whatever the file stores.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return load_hf(path, **overrides)
    if path.suffix == ".gguf" and path.is_file():
        return load_gguf(path, **overrides)
    raise ValueError(f"path: expected a .gguf file or a Hugging Face folder, got {str(path)!r}")
