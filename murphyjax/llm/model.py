"""A Llama-family decoder in Flax NNX (SmolLM2, Llama 2/3 without rope scaling, TinyLlama, ...).

    h_0 = E[x];  h <- h + Attn(RMSNorm(h));  h <- h + SwiGLU(RMSNorm(h));  logits = RMSNorm(h) W_out

The numerics follow Hugging Face's ``LlamaForCausalLM`` (rotate-half RoPE, RMSNorm in float32, softmax in
float32), so pretrained checkpoints give the same logits. Weights are stored ``(in, out)`` (``x @ W``).
``LlamaConfig.scan_layers`` chooses the layer layout: ``True`` stacks every weight over layers (leading
axis ``L``) and runs the layers as one ``lax.scan`` (one compiled layer: fast compiles, the accelerator
default); ``False`` keeps one weight set per layer (``blocks/layers/i/...``) and unrolls the loop, so no
step copies weights out of, or gradients back into, a stacked array (the fastest training step on CPU).
Both layouts draw the same initial weights for a seed and give the same logits up to float rounding. Q/K/V and gate/up are stored
fused (``Blocks``), so each is one matmul with no per-step weight concatenation; ``LlamaConfig.remat``
chooses what the backward pass recomputes.

Shortcuts: no attention/MLP biases, no rope scaling, no dropout, no sliding window. Positions come from
the attention mask (``cumsum(mask) - 1``), so left padding does not shift a prompt's positions.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

_DTYPES = ("float32", "bfloat16", "float16")
# What a layer keeps for the backward pass (the rest is recomputed there from the layer's input):
# "none" keeps every intermediate (autodiff's default); "dots" keeps only the outputs of the weight
# matmuls (norms, RoPE, attention softmax, SwiGLU and the fused weight concatenations are recomputed);
# "full" keeps only the layer input (one extra forward).
_REMAT = {"none": None, "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
          "full": jax.checkpoint_policies.nothing_saveable}


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Architecture and numerics of a Llama-family decoder.

    ``dtype`` is the compute dtype of activations and matmuls; ``param_dtype`` the storage dtype of the
    weights (keep float32 for training; ``dtype="bfloat16"`` is the accelerator option). Norms, softmax,
    RoPE and logits are always computed in float32. ``scan_layers``: stacked weights and
    one ``lax.scan`` over layers (True: compiles one layer; the default, best on accelerators) or one weight
    set per layer and an unrolled loop (False: the fastest step on CPU, longer compiles). ``remat``: what a
    layer keeps for the backward pass
    ("none": everything; "dots": only the weight matmuls' outputs; "full": only its input), a memory
    for compute trade that gives the same gradients. ``trainable_layers``: 0 trains every weight; k > 0
    stops the gradient below the top k layers (the embedding, tied output projection included, and the
    lower layers get exactly zero gradient, so AdamW without weight decay leaves them unchanged, and
    their backward pass is never computed). The forward pass is the same either way.
    """

    vocab_size: int = 49152
    hidden_size: int = 576
    intermediate_size: int = 1536
    num_layers: int = 30
    num_heads: int = 9
    num_kv_heads: int = 3
    head_dim: int = 64
    rope_theta: float = 100000.0
    rms_norm_eps: float = 1e-5
    tie_embeddings: bool = True
    max_seq_len: int = 8192
    dtype: str = "float32"
    param_dtype: str = "float32"
    scan_layers: bool = True
    remat: str = "none"
    init_std: float = 0.02
    trainable_layers: int = 0

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                     "num_kv_heads", "head_dim", "max_seq_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_kv_heads must divide num_heads ({self.num_heads}), got {self.num_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even (rotary pairs), got {self.head_dim}")
        for name in ("rope_theta", "rms_norm_eps", "init_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in _DTYPES:
                raise ValueError(f"{name} must be one of {_DTYPES}, got {getattr(self, name)!r}")
        if isinstance(self.trainable_layers, bool) or not isinstance(self.trainable_layers, int) \
                or not 0 <= self.trainable_layers <= self.num_layers:
            raise ValueError(f"trainable_layers must be an integer in [0, num_layers = {self.num_layers}] (0: all), "
                             f"got {self.trainable_layers!r}")
        if self.remat not in _REMAT:
            raise ValueError(f"remat must be one of {tuple(_REMAT)}, got {self.remat!r}")

    @property
    def num_params(self) -> int:
        """Parameter count N (embedding included once when tied)."""
        d, f, hd = self.hidden_size, self.intermediate_size, self.head_dim
        attn = d * hd * (2 * self.num_heads + 2 * self.num_kv_heads)
        layer = attn + 3 * d * f + 2 * d
        head = 0 if self.tie_embeddings else d * self.vocab_size
        return self.vocab_size * d + self.num_layers * layer + d + head

    @classmethod
    def smollm2_135m(cls, **kw) -> "LlamaConfig":
        """SmolLM2-135M(-Instruct): 30 layers, d=576, 9 heads / 3 KV heads, tied head, 134.5 M params."""
        return cls(**kw)

    @classmethod
    def tiny(cls, **kw) -> "LlamaConfig":
        """A tiny random config of the same architecture (GQA, tied head) for tests."""
        base = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                    num_kv_heads=2, head_dim=16, rope_theta=10000.0, max_seq_len=256)
        return cls(**{**base, **kw})


class KVCache(NamedTuple):
    """Keys/values of every layer for ``T`` slots; slot ``t`` attends only if ``valid[:, t]``."""

    k: jax.Array  # (L, B, T, K, hd)
    v: jax.Array  # (L, B, T, K, hd)
    valid: jax.Array  # (B, T) bool
    index: jax.Array  # () int32, next slot to write

    @classmethod
    def init(cls, cfg: LlamaConfig, batch: int, length: int, layers: int | None = None) -> "KVCache":
        """An empty cache of ``length`` slots for ``layers`` layers (default: all of them)."""
        shape = (cfg.num_layers if layers is None else layers, batch, length, cfg.num_kv_heads, cfg.head_dim)
        z = jnp.zeros(shape, cfg.dtype)
        return cls(z, z, jnp.zeros((batch, length), bool), jnp.zeros((), jnp.int32))


def rms_norm(x: jax.Array, w: jax.Array, eps: float) -> jax.Array:
    """RMSNorm, y = w * x / sqrt(mean(x^2) + eps), statistics in float32 (as HF Llama)."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return w.astype(x.dtype) * y.astype(x.dtype)


def rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotary embedding, rotate-half layout: x*cos + rotate_half(x)*sin, angles p / theta^(2i/hd).

    Args: x (B, S, heads, hd); positions (B, S) integers. Returns x rotated, same dtype.
    """
    hd = x.shape[-1]
    inv_freq = 1.0 / (theta ** (jnp.arange(0, hd, 2, dtype=jnp.float32) / hd))
    ang = positions.astype(jnp.float32)[..., None] * inv_freq  # (B, S, hd/2)
    cos = jnp.cos(jnp.concatenate([ang, ang], -1))[:, :, None, :]
    sin = jnp.sin(jnp.concatenate([ang, ang], -1))[:, :, None, :]
    x32 = x.astype(jnp.float32)
    x1, x2 = x32[..., : hd // 2], x32[..., hd // 2:]
    rotated = jnp.concatenate([-x2, x1], -1)
    return (x32 * cos + rotated * sin).astype(x.dtype)


def positions_from_mask(mask: jax.Array) -> jax.Array:
    """Position of each token among the valid tokens of its row: cumsum(mask) - 1, 0 on padding."""
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)


def attention(q, kv: list[tuple[jax.Array, jax.Array]], bias):
    """Grouped-query attention softmax(q k^T / sqrt(hd) + bias) v without repeating K/V heads.

    Args:
      q: (B, S, H, hd) queries.
      kv: chunks of keys/values [(k, v), ...], each (B, T_i, K, hd) with K | H; attended as if
        concatenated along T (the KV cache and the new tokens, without copying the cache).
      bias: (B, S, sum T_i) additive float32 mask.

    Returns: (B, S, H*hd).
    """
    b, s, h, hd = q.shape
    kh = kv[0][0].shape[2]
    q = q.reshape(b, s, kh, h // kh, hd) * jnp.asarray(hd ** -0.5, q.dtype)
    scores = jnp.concatenate(
        [jnp.einsum("bskgd,btkd->bkgst", q, k, preferred_element_type=jnp.float32) for k, _ in kv], -1)
    p = jax.nn.softmax(scores + bias[:, None, None], axis=-1).astype(q.dtype)
    out, start = 0.0, 0
    for k, v in kv:
        out = out + jnp.einsum("bkgst,btkd->bskgd", p[..., start:start + k.shape[1]], v)
        start += k.shape[1]
    return out.reshape(b, s, h * hd)


def _mask_bias(allowed: jax.Array) -> jax.Array:
    # A large finite negative (not -inf): a fully masked row (a padding query) stays finite.
    return jnp.where(allowed, 0.0, jnp.finfo(jnp.float32).min).astype(jnp.float32)


def _block(cfg: LlamaConfig, x, p, positions, bias, kv_old):
    """One decoder layer. ``kv_old``: cached (k, v) of earlier slots or None. Returns (x, (k, v) new)."""
    dt = x.dtype
    b, s, d = x.shape
    g = cfg.num_heads // cfg.num_kv_heads
    h = rms_norm(x, p["attn_norm"], cfg.rms_norm_eps)
    # one matmul for Q, K, V (and one for gate, up) on weights stored fused: wider products run faster
    # than narrow ones on CPUs, and no step concatenates weights or splits their gradients. The weights
    # enter as 2-D (D, out) matrices (a free reshape): with the 4-D/3-D einsum XLA:CPU copied each one
    # transposed for the input-gradient product (7 % of a SmolLM2 training step)
    qkv = (h @ p["wqkv"].reshape(d, -1).astype(dt)).reshape(b, s, cfg.num_kv_heads, g + 2, cfg.head_dim)
    # split (not slicing): its transpose is one concatenate, where slices' would be pads plus adds
    q, k, v = jnp.split(qkv, [g, g + 1], axis=3)
    q, k, v = q.reshape(b, s, cfg.num_heads, cfg.head_dim), k[:, :, :, 0], v[:, :, :, 0]
    q, k = rope(q, positions, cfg.rope_theta), rope(k, positions, cfg.rope_theta)
    chunks = [(k, v)] if kv_old is None else [kv_old, (k, v)]
    x = x + attention(q, chunks, bias) @ p["wo"].astype(dt)
    h = rms_norm(x, p["mlp_norm"], cfg.rms_norm_eps)
    gate, up = jnp.split((h @ p["w_gate_up"].reshape(d, -1).astype(dt)).reshape(b, s, 2, -1), 2, axis=2)
    x = x + (jax.nn.silu(gate[:, :, 0]) * up[:, :, 0]) @ p["w_down"].astype(dt)
    return x, (k, v)


class LayerWeights(nnx.Module):
    """One decoder layer's weights (the per-layer layout, ``scan_layers=False``); fields as in ``Blocks``."""

    def __init__(self, arrays: dict[str, jax.Array]):
        for n in Blocks.NAMES:
            setattr(self, n, nnx.Param(arrays[n]))


class Blocks(nnx.Module):
    """The decoder layers' weights in ``x @ W`` layout: stacked over layers (leading axis L) when
    ``cfg.scan_layers``, else one ``LayerWeights`` per layer in ``self.layers``.

    Q, K and V are one array ``wqkv`` (D, K, H/K + 2, hd): for each KV head, its H/K query heads,
    then its key and its value head (so tensor parallelism splits it by KV head); gate and up are
    ``w_gate_up`` (D, 2, F). ``split_qkv`` / ``fuse_qkv`` convert to and from separate (D, out) matrices.
    Both layouts draw the same initial values (the stacked arrays, split per layer).
    """

    NAMES = ("attn_norm", "wqkv", "wo", "mlp_norm", "w_gate_up", "w_down")

    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        L, d, f, hd = cfg.num_layers, cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
        kv, g = cfg.num_kv_heads, cfg.num_heads // cfg.num_kv_heads
        init = jax.nn.initializers.normal(cfg.init_std)
        pd = jnp.dtype(cfg.param_dtype)

        def w(*shape):
            return init(rngs.params(), (L, *shape), pd)

        arrays = {"attn_norm": jnp.ones((L, d), pd), "wqkv": w(d, kv, g + 2, hd), "wo": w(cfg.num_heads * hd, d),
                  "mlp_norm": jnp.ones((L, d), pd)}
        arrays["w_gate_up"], arrays["w_down"] = w(d, 2, f), w(f, d)
        self.stacked = cfg.scan_layers
        if self.stacked:
            for n in self.NAMES:
                setattr(self, n, nnx.Param(arrays[n]))
        else:
            self.layers = nnx.List([LayerWeights({n: a[i] for n, a in arrays.items()}) for i in range(L)])

    def arrays(self) -> dict[str, jax.Array]:
        """Stacked (L, ...) weights (a stacking copy in the per-layer layout)."""
        if self.stacked:
            return {n: getattr(self, n)[...] for n in self.NAMES}
        return {n: jnp.stack([getattr(layer, n)[...] for layer in self.layers]) for n in self.NAMES}

    def unstacked(self) -> list[dict[str, jax.Array]]:
        """Per-layer weight dicts (the parameters themselves in the per-layer layout; slices of the
        stacked arrays otherwise, taken once, e.g. outside a decode loop)."""
        if not self.stacked:
            return [{n: getattr(layer, n)[...] for n in self.NAMES} for layer in self.layers]
        per = {n: jnp.unstack(w) for n, w in self.arrays().items()}
        return [{n: w[i] for n, w in per.items()} for i in range(len(per["wo"]))]


def split_qkv(wqkv, num_heads: int):
    """(..., D, K, H/K + 2, hd) -> W_q (..., D, H*hd), W_k, W_v (..., D, K*hd) in Hugging Face head order."""
    g = num_heads // wqkv.shape[-3]
    lead = wqkv.shape[:-3]
    return (wqkv[..., :g, :].reshape(*lead, -1), wqkv[..., g, :].reshape(*lead, -1),
            wqkv[..., g + 1, :].reshape(*lead, -1))


def fuse_qkv(wq, wk, wv, num_kv_heads: int, head_dim: int, xp=jnp):
    """Inverse of ``split_qkv``: separate (..., D, out) matrices -> (..., D, K, H/K + 2, hd)."""
    lead = wq.shape[:-1]
    q = wq.reshape(*lead, num_kv_heads, -1, head_dim)
    k, v = (w.reshape(*lead, num_kv_heads, 1, head_dim) for w in (wk, wv))
    return xp.concatenate([q, k, v], -2)


class Llama(nnx.Module):
    """Llama-family causal LM. ``model(input_ids, attention_mask=None)`` -> float32 logits (B, S, V)."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        pd = jnp.dtype(cfg.param_dtype)
        init = jax.nn.initializers.normal(cfg.init_std)
        self.embed = nnx.Param(init(rngs.params(), (cfg.vocab_size, cfg.hidden_size), pd))
        self.blocks = Blocks(cfg, rngs)
        self.final_norm = nnx.Param(jnp.ones((cfg.hidden_size,), pd))
        self.lm_head = None if cfg.tie_embeddings else nnx.Param(
            init(rngs.params(), (cfg.hidden_size, cfg.vocab_size), pd))

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        """Logits (B, S, V) float32 of a causal forward pass; padding (mask 0) is never attended to."""
        if attention_mask is None:
            attention_mask = jnp.ones(input_ids.shape, bool)
        h, _ = self.hidden(input_ids, attention_mask, positions_from_mask(attention_mask))
        return self.logits(h)

    def hidden(self, input_ids, valid, positions, cache: KVCache | None = None, layers: list | None = None, *,
               inputs=None, first: int = 0, last: int | None = None):
        """Final hidden states (B, S, D) after the last norm, and the updated cache (or None).

        With a cache, the S new tokens go to slots [cache.index, cache.index + S) and attend to every
        earlier valid slot plus, causally, to each other. ``layers``: per-layer weights from
        ``blocks.unstacked()``, taken once outside a decode loop so no step slices stacked weights (the
        per-layer layout, ``scan_layers=False``, uses its own parameters without copies).

        A part of the stack: layers [first, last) run from ``inputs`` (B, S, D), the activations entering
        layer ``first`` (default: the token embeddings); with ``last`` below the number of layers the
        activations leaving layer last - 1 are returned, before the final norm. So
        ``hidden(..., inputs=hidden(..., last=k)[0], first=k)`` is ``hidden(...)``: a frozen trunk's
        features can be computed once and the top layers trained on them. A cache for a part of the stack
        holds the last - first layers [first, last) (``KVCache.init(cfg, b, t, layers=last - first)``), so
        models that share a frozen trunk can share its cache and keep only their upper layers' own.
        """
        cfg = self.config
        n_layers = cfg.num_layers
        last = n_layers if last is None else last
        if not 0 <= first <= last <= n_layers:
            raise ValueError(f"first, last must satisfy 0 <= first <= last <= {n_layers}; got {first}, {last}")
        if cache is not None and cache.k.shape[0] != last - first:
            raise ValueError(f"the cache holds {cache.k.shape[0]} layers; layers [{first}, {last}) need a cache of "
                             f"{last - first}")
        valid = valid.astype(bool)
        s = input_ids.shape[1]
        causal = jnp.tril(jnp.ones((s, s), bool))[None] & valid[:, None, :]
        allowed = causal if cache is None else jnp.concatenate(
            [jnp.broadcast_to(cache.valid[:, None, :], (valid.shape[0], s, cache.valid.shape[1])), causal], -1)
        bias = _mask_bias(allowed)
        x = jnp.take(self.embed[...], input_ids, axis=0).astype(cfg.dtype) if inputs is None else inputs.astype(cfg.dtype)

        def step(x, inputs):
            p, kv_old = inputs
            return _block(cfg, x, p, positions, bias, kv_old)

        if cache is None and _REMAT[cfg.remat] is not None:
            step = jax.checkpoint(step, policy=_REMAT[cfg.remat])

        kv_old = None if cache is None else (cache.k, cache.v)
        frozen = n_layers - cfg.trainable_layers if cfg.trainable_layers else 0
        if layers is None and not cfg.scan_layers:
            layers = self.blocks.unstacked()
        if layers is not None:
            outs = []
            for i in range(first, last):
                if i == frozen and cfg.trainable_layers:
                    x = jax.lax.stop_gradient(x)
                x, kv = step(x, (layers[i], None if kv_old is None else (kv_old[0][i - first], kv_old[1][i - first])))
                outs.append(kv)
            k_new, v_new = (jnp.stack(t) for t in zip(*outs)) if outs else (None, None)
        else:  # one scan per segment: below the frozen boundary, then above it
            arrays = self.blocks.arrays()
            part = lambda t, a, b: None if t is None else jax.tree.map(lambda z: z[a:b], t)  # noqa: E731
            cuts = [first] + ([frozen] if first < frozen < last else []) + [last]
            kvs = []
            for a_, b_ in zip(cuts[:-1], cuts[1:]):
                if a_ == frozen and cfg.trainable_layers:
                    x = jax.lax.stop_gradient(x)
                if b_ > a_:
                    x, kv = jax.lax.scan(step, x, (part(arrays, a_, b_), part(kv_old, a_ - first, b_ - first)))
                    kvs.append(kv)
            k_new, v_new = (jnp.concatenate(t) if len(t) > 1 else t[0] for t in zip(*kvs)) if kvs else (None, None)
        h = x if last < n_layers else rms_norm(x, self.final_norm[...], cfg.rms_norm_eps)
        if cache is None:
            return h, None
        zero = jnp.zeros((), jnp.int32)
        at = (zero, zero, cache.index, zero, zero)
        cache = KVCache(jax.lax.dynamic_update_slice(cache.k, k_new.astype(cache.k.dtype), at),
                        jax.lax.dynamic_update_slice(cache.v, v_new.astype(cache.v.dtype), at),
                        jax.lax.dynamic_update_slice(cache.valid, valid, (zero, cache.index)),
                        cache.index + s)
        return h, cache

    def logits(self, h: jax.Array) -> jax.Array:
        """Output projection in float32 accumulation: h @ E^T (tied) or h @ W_out."""
        w = self.embed[...].T if self.lm_head is None else self.lm_head[...]
        if self.config.trainable_layers and self.lm_head is None:  # the tied embedding is frozen with the lower layers
            w = jax.lax.stop_gradient(w)
        return jnp.matmul(h, w.astype(h.dtype), preferred_element_type=jnp.float32)


def init(cfg: LlamaConfig, seed: int = 0) -> Llama:
    """A randomly initialised ``Llama``, built by one compiled function (eager init compiles op by op)."""
    return _init(cfg, jax.random.key(seed))


@functools.partial(nnx.jit, static_argnums=0)
def _init(cfg, key):
    return Llama(cfg, rngs=nnx.Rngs(key))


@nnx.jit
def forward(model: Llama, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
    """``model(input_ids, attention_mask)`` compiled once per shape (eager calls dispatch op by op)."""
    return model(input_ids, attention_mask)


@nnx.jit
def decode(model: Llama, input_ids, valid, positions, cache: KVCache):
    """One compiled cached step: logits (B, S, V) of the new tokens and the updated cache."""
    h, cache = model.hidden(input_ids, valid, positions, cache)
    return model.logits(h), cache
