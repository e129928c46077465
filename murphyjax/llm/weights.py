"""Pretrained weights, offline: GGUF files (llama.cpp) and Hugging Face folders (safetensors). Never pickle.

Both formats are read into one canonical form, Hugging Face's tensor names with (out, in) matrices,
then stacked into the model's (L, in, out) layout. GGUF specifics:

* ggml lists dimensions innermost first; the ``gguf`` reader already returns numpy (out, in) arrays,
  and ``gguf.quants.dequantize`` expands quantized blocks (Q4_1, Q8_0, ...) to float32.
* llama.cpp's converter permutes the rows of W_q and W_k from HF's rotate-half RoPE layout to the
  interleaved-pairs layout, ``w.reshape(n, 2, hd/2, d).swapaxes(1, 2)`` per head; it is undone here with
  ``w.reshape(n, hd/2, 2, d).swapaxes(1, 2)`` (n = query heads for Q, KV heads for K).

Files are untrusted: every length, count, dtype, shape and offset is checked against the file size (and the
config) before data is read, then every weight must be floating point and finite, and the tokenizer's ids
must index the embedding. A malformed file raises one ``ModelFileError`` (a ``ValueError``) naming the file
and what is wrong. Pickle checkpoints (by name or by content) are refused, never unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import math
import mmap
import os
import stat
import struct
import zipfile
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
_GGUF_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
               "lm_head.weight": "output.weight"}
_GGUF_LAYER = {
    "attn_norm": "attn_norm.weight", "wq": "attn_q.weight", "wk": "attn_k.weight", "wv": "attn_v.weight",
    "wo": "attn_output.weight", "mlp_norm": "ffn_norm.weight", "w_gate": "ffn_gate.weight",
    "w_up": "ffn_up.weight", "w_down": "ffn_down.weight",
}
_GGUF_BY_HF = {_HF_LAYER[k]: v for k, v in _GGUF_LAYER.items()}


def _gguf_name(hf_name: str) -> str:
    if not hf_name.startswith("model.layers."):
        return _GGUF_NAMES[hf_name]
    _, _, i, rest = hf_name.split(".", 3)
    return f"blk.{i}.{_GGUF_BY_HF[rest]}"


class ModelFileError(ValueError):
    """A model file or folder that cannot be loaded; the message names the file and what is wrong."""


_PICKLE = "pickle checkpoints are never loaded: they can run code; convert to safetensors"
_PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}


def is_pickle(path: str | os.PathLike) -> bool:
    """A pickle checkpoint, by name or by content (PROTO opcode, or a torch zip holding ``*.pkl``); never unpickled."""
    path = Path(path)
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:  # unreadable: whoever reads it reports why
        return False
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return True
    if head == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                return any(n.endswith(".pkl") for n in z.namelist())
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return False
    return False


def _file_size(path: Path) -> int:
    """The size of the regular file ``path``; a folder, a broken link or an unreadable path is a ModelFileError."""
    try:
        st = path.stat()
    except OSError as e:
        raise ModelFileError(f"{path}: cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(f"{path}: a folder where a file is expected")
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(f"{path}: not a regular file")
    return st.st_size


def _float32(where, name: str, w) -> np.ndarray:
    """A weight as float32 numpy: floating point in the file and finite everywhere, else a ModelFileError."""
    if w.dtype not in _FLOAT_DTYPES:
        raise ModelFileError(f"{where}: tensor {name!r} has dtype {w.dtype}, not a floating-point type")
    w = np.asarray(w, np.float32)
    if not np.isfinite(w).all():
        raise ModelFileError(f"{where}: tensor {name!r} holds {int(w.size - np.isfinite(w).sum())} non-finite "
                             "values (NaN or inf)")
    return w


def _check_vocab(where, tokenizer, cfg: LlamaConfig) -> None:
    """Every token id must index a row of the embedding (an id past it would be clamped, silently)."""
    n = len(tokenizer)
    if n > cfg.vocab_size:
        raise ModelFileError(f"{where}: the tokenizer has {n} tokens, more than the {cfg.vocab_size} rows of the "
                             "embedding")


def hf_shape(cfg: LlamaConfig, name: str) -> tuple[int, ...]:
    """The (out, in) shape ``cfg`` needs for the HF-named tensor ``name``."""
    d, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    return {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,), "lm_head.weight": (v, d),
            "input_layernorm.weight": (d,), "post_attention_layernorm.weight": (d,),
            "self_attn.q_proj.weight": (q, d), "self_attn.k_proj.weight": (kv, d), "self_attn.v_proj.weight": (kv, d),
            "self_attn.o_proj.weight": (d, q), "mlp.gate_proj.weight": (f, d), "mlp.up_proj.weight": (f, d),
            "mlp.down_proj.weight": (d, f)}[name.split(".", 3)[3] if name.startswith("model.layers.") else name]


def _wrong_shape(where, name: str, shape, needed) -> ModelFileError:
    return ModelFileError(f"{where}: tensor {name!r} has shape {tuple(shape)}, wrong shape for the config "
                          f"(needs {needed})")


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

    def a(k, default=None, conv=None):
        v = _field(reader, f"llama.{k}", default)
        if conv is None:
            return v
        if v is None:
            raise ValueError(f"missing GGUF key 'llama.{k}'")
        try:
            return conv(v)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"GGUF key 'llama.{k}' is not a number: {v!r}") from None

    d, heads = a("embedding_length", conv=int), a("attention.head_count", conv=int)
    if a("rope.scaling.type") not in (None, "none"):
        raise ValueError(f"rope scaling {a('rope.scaling.type')!r} is not supported")
    names = {t.name for t in reader.tensors}
    emb = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if emb is None or len(emb.shape) != 2:
        raise ValueError("missing tensor 'token_embd.weight'" if emb is None else
                         f"tensor 'token_embd.weight' has {len(emb.shape)} dimensions, not 2")
    return LlamaConfig(**{**dict(
        vocab_size=int(emb.shape[1]), hidden_size=d, intermediate_size=a("feed_forward_length", conv=int),
        num_layers=a("block_count", conv=int), num_heads=heads,
        num_kv_heads=a("attention.head_count_kv", heads, int),
        head_dim=a("attention.key_length", a("rope.dimension_count", d // max(heads, 1)), int),
        rope_theta=a("rope.freq_base", 10000.0, _f32), rms_norm_eps=a("attention.layer_norm_rms_epsilon", 1e-5, _f32),
        tie_embeddings="output.weight" not in names, max_seq_len=a("context_length", 8192, int)), **overrides})


_GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # value type -> bytes
_GGUF_STRING, _GGUF_ARRAY, _GGUF_UINT32 = 8, 9, 4


def check_gguf(path: str | os.PathLike) -> None:
    """Walk a GGUF header checking every count, length, type and tensor extent against the file size.

    The ``gguf`` reader trusts them (a huge array length makes it loop without end), so it only sees
    files that pass this. Raises ``ModelFileError``.
    """
    from gguf.constants import GGML_QUANT_SIZES

    path = Path(path)
    size, types = _file_size(path), {int(k) for k in GGML_QUANT_SIZES}
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if head != b"GGUF":
                what = "empty file" if not head else f"starts with {head!r}"
                raise ModelFileError(f"{path}: {_PICKLE if is_pickle(path) else f'not a GGUF file ({what})'}")
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise ModelFileError(f"{path}: cannot be read ({e.strerror or e})") from None
    pos, order = 4, "<"

    def bad(why):
        return ModelFileError(f"{path}: corrupt GGUF: {why}")

    def skip(n):
        nonlocal pos
        if n > size - pos:
            raise bad(f"truncated: {n} bytes needed at byte {pos} of {size}")
        pos += n

    def take(fmt):
        skip(struct.calcsize(fmt))
        return struct.unpack_from(order + fmt, buf, pos - struct.calcsize(fmt))[0]

    def string():
        n = take("Q")
        skip(n)
        try:
            return buf[pos - n:pos].decode("utf-8")
        except UnicodeDecodeError:
            raise bad(f"string at byte {pos - n} is not UTF-8") from None

    def value(t, depth=0):
        if t in _GGUF_SCALARS:
            skip(_GGUF_SCALARS[t])
        elif t == _GGUF_STRING:
            skip(take("Q"))
        elif t == _GGUF_ARRAY and depth < 4:
            item, n = take("I"), take("Q")
            if item in _GGUF_SCALARS:
                skip(n * _GGUF_SCALARS[item])
            elif n * 8 > size - pos:  # every string or array item takes at least 8 bytes
                raise bad(f"array of {n} items at byte {pos} is beyond the file size {size}")
            else:
                for _ in range(n):
                    value(item, depth + 1)
        else:
            raise bad(f"unknown value type {t} at byte {pos - 4}")

    try:
        version = take("I")
        if version & 0xFFFF == 0:  # written on a big-endian machine
            order, version = ">", int.from_bytes(version.to_bytes(4, "little"), "big")
        if version not in (2, 3):
            raise bad(f"unsupported GGUF version {version}")
        n_tensors, n_kv = take("Q"), take("Q")
        if 13 * n_kv + 24 * n_tensors > size - pos:  # the smallest key/value and tensor entries
            raise bad(f"{n_kv} metadata entries and {n_tensors} tensors do not fit in {size} bytes")
        keys, alignment = set(), 32
        for _ in range(n_kv):
            key, t = string(), take("I")
            if key in keys:
                raise bad(f"duplicate key {key!r}")
            keys.add(key)
            if key == "general.alignment":
                alignment = take("I") if t == _GGUF_UINT32 else 0
                if alignment < 1 or alignment & (alignment - 1):
                    raise bad("general.alignment is not a power of two (uint32)")
            else:
                value(t)
        tensors = {}
        for _ in range(n_tensors):
            name, n_dims = string(), take("I")
            if name in tensors or n_dims > 4:
                raise bad(f"tensor {name!r}: " + ("duplicate name" if name in tensors else f"{n_dims} dimensions"))
            dims = [take("Q") for _ in range(n_dims)]
            ttype, offset = take("I"), take("Q")
            if ttype not in types:
                raise bad(f"tensor {name!r}: unknown tensor type {ttype}")
            block, nbytes = GGML_QUANT_SIZES[ttype]
            if dims and dims[0] % block:
                raise bad(f"tensor {name!r}: row length {dims[0]} is not a multiple of its block size {block}")
            tensors[name] = (offset, math.prod(dims) * nbytes // block)
        start = -(-pos // alignment) * alignment
        for name, (offset, nbytes) in tensors.items():
            if start + offset + nbytes > size:
                raise bad(f"tensor {name!r}: data [{start + offset}, {start + offset + nbytes}) is beyond the "
                          f"file size {size} (truncated)")
    finally:
        buf.close()


def load_gguf(path: str | os.PathLike, **overrides) -> tuple[Llama, object]:
    """Model and tokenizer from a GGUF file (any ``gguf``-dequantizable tensor type)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from murphyjax.llm.tokenizer import tokenizer_from_gguf

    path = Path(path)
    check_gguf(path)
    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # whatever the third-party parser raises, as one error
        raise ModelFileError(f"{path}: corrupt GGUF: {type(e).__name__}: {e}") from e
    try:
        cfg = config_from_gguf(reader)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: {e}") from None
    cfg = dataclasses.replace(cfg, **overrides)
    try:
        tokenizer = tokenizer_from_gguf(reader)
    except Exception as e:  # tokenizers raises plain Exception
        raise ModelFileError(f"{path}: invalid tokenizer: {type(e).__name__}: {e}") from e
    _check_vocab(path, tokenizer, cfg)
    tensors = {t.name: t for t in reader.tensors}

    def get(name):
        gname = _gguf_name(name)
        if gname not in tensors:
            raise ModelFileError(f"{path}: missing tensor {gname!r}")
        t = tensors[gname]
        shape = tuple(int(s) for s in reversed(t.shape))
        if shape != hf_shape(cfg, name):
            raise _wrong_shape(path, gname, shape, hf_shape(cfg, name))
        try:
            w = dequantize(t.data, t.tensor_type).reshape(shape)
        except (NotImplementedError, ValueError) as e:
            raise ModelFileError(f"{path}: tensor {gname!r} of type {t.tensor_type.name} cannot be read: {e}") from e
        w = _float32(path, gname, w)
        if name.endswith("q_proj.weight"):
            w = unpermute_qk(w, cfg.num_heads)
        elif name.endswith("k_proj.weight"):
            w = unpermute_qk(w, cfg.num_kv_heads)
        return w

    return model_from_arrays(cfg, get), tokenizer


# ---------------------------------------------------------------- Hugging Face folders

_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_FLOAT_DTYPES = {np.dtype(t) for t in (np.float64, np.float32, np.float16, ml_dtypes.bfloat16)}
_ST_MAX_HEADER = 100_000_000  # the safetensors library's own limit
_MAX_CONFIG = 10_000_000


def _json_kind(x) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(x), "null")


def _natural(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Memory-mapped numpy views of a .safetensors file (bfloat16 via ml_dtypes; no torch, no pickle).

    The header length, then every tensor's dtype, shape and data offsets, are checked against the file
    size before anything else is read; a malformed file raises ``ModelFileError``.
    """
    path = Path(path)
    size = _file_size(path)

    def bad(why):
        return ModelFileError(f"{path}: {why}")

    try:
        with open(path, "rb") as f:
            head = f.read(9)
            if len(head) < 8:
                raise bad(f"truncated: {size} bytes, less than the 8-byte safetensors header length")
            n = int.from_bytes(head[:8], "little")
            if (n > size - 8 or head[8:9] != b"{") and is_pickle(path):
                raise bad(_PICKLE)
            if n > size - 8:
                raise bad(f"header length {n} is beyond the file size {size} (truncated, or not safetensors)")
            if n > _ST_MAX_HEADER:
                raise bad(f"header too large: {n} bytes (at most {_ST_MAX_HEADER})")
            f.seek(8)
            raw = f.read(n)
    except OSError as e:
        raise bad(f"cannot be read ({e.strerror or e})") from None
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise bad(f"header is not valid JSON (not safetensors): {type(e).__name__}: {e}") from None
    if not isinstance(header, dict):
        raise bad(f"header is a JSON {_json_kind(header)}, not an object (not safetensors)")
    data_size, specs = size - 8 - n, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise bad(f"tensor {name!r}: header entry {info!r} is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not (isinstance(dtype, str) and dtype in _ST_DTYPES):
            raise bad(f"tensor {name!r}: unsupported dtype {dtype!r} (supported: {', '.join(_ST_DTYPES)})")
        if not (isinstance(shape, list) and all(map(_natural, shape))):
            raise bad(f"tensor {name!r}: invalid shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_natural, offsets))
                and offsets[0] <= offsets[1]):
            raise bad(f"tensor {name!r}: invalid data_offsets {offsets!r}")
        if offsets[1] > data_size:
            raise bad(f"tensor {name!r}: data_offsets {offsets} are beyond the {data_size} data bytes in the file "
                      "(truncated)")
        nbytes = math.prod(shape) * np.dtype(_ST_DTYPES[dtype]).itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise bad(f"tensor {name!r}: data_offsets {offsets} hold {offsets[1] - offsets[0]} bytes, "
                      f"but a {dtype} tensor of shape {shape} needs {nbytes}")
        specs[name] = (_ST_DTYPES[dtype], tuple(shape), *offsets)
    data = np.memmap(path, np.uint8, "r", offset=8 + n, shape=(data_size,)) if data_size else np.zeros(0, np.uint8)
    return {name: data[start:end].view(dt).reshape(shape) for name, (dt, shape, start, end) in specs.items()}


def config_from_hf(cfg: dict, **overrides) -> LlamaConfig:
    """LlamaConfig from a Hugging Face ``config.json`` dict (model_type llama, no biases, no rope scaling)."""
    if not isinstance(cfg, dict):
        raise ValueError(f"expected a JSON object, got a JSON {_json_kind(cfg)}")
    if cfg.get("model_type", "llama") != "llama":
        raise ValueError(f"model_type {cfg.get('model_type')!r} is not supported (only 'llama')")
    if cfg.get("attention_bias") or cfg.get("mlp_bias"):
        raise ValueError("attention_bias/mlp_bias checkpoints are not supported")
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise ValueError(f"rope_parameters/rope_scaling must be an object, got {rope!r}")
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ValueError(f"rope scaling {rope.get('rope_type', rope.get('type'))!r} is not supported")
    missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                           "num_attention_heads") if k not in cfg]
    if missing:
        raise ValueError(f"missing config key{'s' * (len(missing) > 1)} {', '.join(map(repr, missing))}")

    def get(key, kind, default=None, src=cfg):
        v = src.get(key)
        if v is None:
            return default
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        if kind is bool and isinstance(v, bool) or kind is float and number:
            return kind(v)
        if kind is int and number and math.isfinite(v) and v > 0 and v == int(v):
            return int(v)
        what = {int: "a positive integer", float: "a number", bool: "true or false"}[kind]
        raise ValueError(f"config key {key!r} must be {what}, got {v!r}")

    heads, d = get("num_attention_heads", int), get("hidden_size", int)
    return LlamaConfig(**{**dict(
        vocab_size=get("vocab_size", int), hidden_size=d, intermediate_size=get("intermediate_size", int),
        num_layers=get("num_hidden_layers", int), num_heads=heads,
        num_kv_heads=get("num_key_value_heads", int, heads), head_dim=get("head_dim", int, d // heads),
        rope_theta=get("rope_theta", float, get("rope_theta", float, 10000.0), rope),
        rms_norm_eps=get("rms_norm_eps", float, 1e-6), tie_embeddings=get("tie_word_embeddings", bool, False),
        max_seq_len=get("max_position_embeddings", int, 8192)), **overrides})


def _read_config(folder: Path) -> LlamaConfig:
    path = folder / "config.json"
    if not os.path.lexists(path):
        raise ModelFileError(f"{path}: not found (config.json not found in {folder})")
    size = _file_size(path)
    if size > _MAX_CONFIG:
        raise ModelFileError(f"{path}: too large for a config ({size} bytes)")
    try:
        raw = json.loads(path.read_bytes())
    except OSError as e:
        raise ModelFileError(f"{path}: cannot be read ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:
        raise ModelFileError(f"{path}: not valid JSON: {type(e).__name__}: {e}") from None
    try:
        return config_from_hf(raw)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: {e}") from None


def load_hf(folder: str | os.PathLike, **overrides) -> tuple[Llama, object]:
    """Model and tokenizer (None without tokenizer.json) from a Hugging Face-format folder."""
    folder = Path(folder)
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise ModelFileError(f"{folder}: cannot be read ({e.strerror or e})") from None
    files = [f for f in entries if f.name.endswith(".safetensors") and not f.name.startswith(".")]
    if not files:
        pickles = [f for f in entries if f.is_file() and is_pickle(f)]
        if pickles:
            raise ModelFileError(f"{pickles[0]}: {_PICKLE}")
        raise ModelFileError(f"{folder}: no *.safetensors weights in the folder")
    cfg = dataclasses.replace(_read_config(folder), **overrides)
    tensors, where = {}, {}
    for f in files:
        for name, w in read_safetensors(f).items():
            if name in tensors:
                raise ModelFileError(f"{f}: tensor {name!r} is also in {where[name]} (two shards hold it)")
            tensors[name], where[name] = w, f

    def get(name):
        if name not in tensors:
            raise ModelFileError(f"{folder}: missing tensor {name!r} (not in {', '.join(f.name for f in files)})")
        if tensors[name].shape != hf_shape(cfg, name):
            raise _wrong_shape(where[name], name, tensors[name].shape, hf_shape(cfg, name))
        return _float32(where[name], name, tensors[name])

    tokenizer = None
    if (folder / "tokenizer.json").exists():
        from transformers import PreTrainedTokenizerFast
        try:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
        except Exception as e:  # tokenizers raises plain Exception
            raise ModelFileError(f"{folder / 'tokenizer.json'}: invalid tokenizer: {type(e).__name__}: {e}") from e
        _check_vocab(folder / "tokenizer.json", tokenizer, cfg)
    return model_from_arrays(cfg, get), tokenizer


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

    Raises:
      ModelFileError: (a ValueError) for a missing, malformed or unsupported file, or a pickle checkpoint;
        the message names the file and what is wrong. Nothing is read before it has been checked.
    """
    path = Path(path).expanduser()
    if path.is_dir() and path.suffix == ".gguf" and not (path / "config.json").exists():
        raise ModelFileError(f"{path}: a folder where a .gguf file is expected")
    if path.is_dir():
        return load_hf(path, **overrides)
    if path.is_file():
        try:
            with open(path, "rb") as f:
                gguf = f.read(4) == b"GGUF"
        except OSError as e:
            raise ModelFileError(f"{path}: cannot be read ({e.strerror or e})") from None
        if path.suffix == ".gguf" or gguf:
            return load_gguf(path, **overrides)
        if is_pickle(path):
            raise ModelFileError(f"{path}: {_PICKLE}")
        if path.suffix == ".safetensors":
            raise ModelFileError(f"{path}: a .safetensors file has no config of its own; pass the folder that holds "
                                 "it with its config.json")
    expected = "expected a .gguf file or a Hugging Face folder"
    raise ModelFileError(f"{path}: {expected}" if path.exists() else f"{path}: no such file or folder ({expected})")
