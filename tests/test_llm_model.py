"""The Flax NNX Llama: shapes and dtypes, RoPE and RMSNorm against independent forms, KV cache, padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from murphyjax import sharding as sh
from murphyjax.llm import KVCache, Llama, LlamaConfig, decode, forward, positions_from_mask
from murphyjax.llm.model import rms_norm, rope

CFG = LlamaConfig.tiny()


@pytest.fixture(scope="module")
def model():
    return Llama(CFG, rngs=nnx.Rngs(0))


def ids_of(shape, seed=1, vocab=CFG.vocab_size):
    return jax.random.randint(jax.random.key(seed), shape, 0, vocab, jnp.int32)


def test_logits_shape_and_float32_everywhere(model):
    logits = forward(model, ids_of((3, 7)))
    assert logits.shape == (3, 7, CFG.vocab_size) and logits.dtype == jnp.float32
    params = nnx.state(model, nnx.Param)
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    assert sum(x.size for x in jax.tree.leaves(params)) == CFG.num_params
    # tiny config written out: 256*64 embed + 2 layers * (64*16*(2*4+2*2) + 3*64*128 + 2*64) + 64
    assert CFG.num_params == 16384 + 2 * (12288 + 24576 + 128) + 64 == 90432


def test_smollm2_parameter_count():
    assert LlamaConfig.smollm2_135m().num_params == 134_515_008


def test_untied_head_and_bf16_compute():
    cfg = LlamaConfig.tiny(tie_embeddings=False)
    m = Llama(cfg, rngs=nnx.Rngs(0))
    assert m.lm_head[...].shape == (cfg.hidden_size, cfg.vocab_size)
    x = ids_of((2, 9))
    ref = forward(m, x)
    m16 = Llama(LlamaConfig.tiny(tie_embeddings=False, dtype="bfloat16"), rngs=nnx.Rngs(0))
    out = forward(m16, x)
    assert out.dtype == jnp.float32 and m16.embed[...].dtype == jnp.float32
    err = float(jnp.max(jnp.abs(out - ref)))
    assert 0 < err < 0.05  # bf16 rounding, not garbage


def test_rope_equals_complex_rotation_of_half_pairs():
    # rotate-half RoPE rotates the pair (x_i, x_{i+hd/2}) by angle p * theta^(-2i/hd): a complex product.
    hd, theta = 8, 10000.0
    x = np.random.default_rng(0).normal(size=(1, 5, 2, hd)).astype(np.float32)
    pos = np.array([[0, 1, 2, 7, 100]])
    z = (x[..., : hd // 2] + 1j * x[..., hd // 2:]) * np.exp(
        1j * pos[..., None, None] * theta ** (-np.arange(0, hd, 2) / hd))
    expected = np.concatenate([z.real, z.imag], -1)
    np.testing.assert_allclose(rope(jnp.asarray(x), jnp.asarray(pos), theta), expected, atol=2e-5)


def test_rms_norm_closed_form():
    x = jnp.asarray([[3.0, 4.0]], jnp.float32)  # rms = sqrt(12.5)
    w = jnp.asarray([1.0, 2.0], jnp.float32)
    np.testing.assert_allclose(rms_norm(x, w, 0.0), [[3 / 12.5 ** 0.5, 8 / 12.5 ** 0.5]], rtol=1e-6)


@pytest.mark.parametrize("scan", [False, True])
def test_kv_cache_decode_equals_full_forward(scan):
    cfg = LlamaConfig.tiny(scan_layers=scan)
    m = Llama(cfg, rngs=nnx.Rngs(0))
    x = ids_of((2, 12))
    full = forward(m, x)
    cache = KVCache.init(cfg, 2, 12)
    valid = jnp.ones((2, 5), bool)
    logits, cache = decode(m, x[:, :5], valid, positions_from_mask(valid), cache)  # prefill 5
    outs = [logits]
    for t in range(5, 12):  # then one token at a time
        logits, cache = decode(m, x[:, t:t + 1], jnp.ones((2, 1), bool), jnp.full((2, 1), t, jnp.int32), cache)
        outs.append(logits)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), full, atol=2e-5)
    assert int(cache.index) == 12 and bool(cache.valid.all())


def test_scan_unrolled_and_hoisted_layers_agree(model):
    x = ids_of((2, 6))
    unrolled = Llama(LlamaConfig.tiny(scan_layers=False), rngs=nnx.Rngs(0))
    # the per-layer layout: one weight set per layer, drawn equal to the stacked layout's for a seed
    paths = {sh.path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(nnx.state(unrolled, nnx.Param))[0]}
    assert "blocks/layers/wqkv" in paths and "blocks/wqkv" not in paths
    assert len(unrolled.blocks.layers) == 2 and unrolled.blocks.layers[0].wqkv[...].shape == (64, 2, 4, 16)
    for n, w in unrolled.blocks.arrays().items():
        np.testing.assert_array_equal(w, getattr(model.blocks, n)[...])
    np.testing.assert_allclose(forward(unrolled, x), forward(model, x), atol=2e-5)
    valid = jnp.ones(x.shape, bool)
    h, _ = model.hidden(x, valid, positions_from_mask(valid), layers=model.blocks.unstacked())
    np.testing.assert_allclose(model.logits(h), forward(model, x), atol=2e-5)


def test_left_padding_changes_nothing(model):
    x = ids_of((1, 6))
    pad = jnp.concatenate([jnp.full((1, 3), 7, jnp.int32), x], 1)
    mask = jnp.concatenate([jnp.zeros((1, 3), bool), jnp.ones((1, 6), bool)], 1)
    np.testing.assert_allclose(forward(model, pad, mask)[:, 3:], forward(model, x), atol=2e-5)
    assert positions_from_mask(mask).tolist() == [[0, 0, 0, 0, 1, 2, 3, 4, 5]]


def test_padding_is_never_attended(model):
    # changing the token under a padding slot must not change any valid position's logits
    x = ids_of((1, 8))
    mask = jnp.asarray([[1, 1, 1, 0, 1, 1, 1, 1]], bool)
    a = forward(model, x, mask)
    b = forward(model, x.at[0, 3].set((x[0, 3] + 1) % CFG.vocab_size), mask)
    keep = np.asarray(mask[0])
    np.testing.assert_array_equal(np.asarray(a)[0, keep], np.asarray(b)[0, keep])


@pytest.mark.parametrize("bad, msg", [
    (dict(num_kv_heads=3), "num_kv_heads must divide"),
    (dict(head_dim=15), "head_dim must be even"),
    (dict(dtype="float64"), "dtype must be one of"),
    (dict(hidden_size=0), "hidden_size must be a positive integer"),
    (dict(rope_theta=-1.0), "rope_theta must be > 0"),
])
def test_config_validation(bad, msg):
    with pytest.raises(ValueError, match=msg):
        LlamaConfig.tiny(**bad)


@pytest.mark.parametrize("scan", [False, True])
def test_remat_policies_give_the_same_gradients(scan):
    x = ids_of((2, 6))

    def grads(remat):
        g, params = nnx.split(Llama(LlamaConfig.tiny(scan_layers=scan, remat=remat), rngs=nnx.Rngs(0)), nnx.Param)
        return jax.grad(lambda p: jnp.sum(nnx.merge(g, p)(x) ** 2) * 1e-3)(params)

    ref = grads("none")
    for remat in ("dots", "full"):
        for a, b in zip(jax.tree.leaves(grads(remat)), jax.tree.leaves(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="remat"):
        LlamaConfig.tiny(remat="some")


def test_fused_qkv_round_trips_and_keeps_head_order():
    from murphyjax.llm.model import fuse_qkv, split_qkv

    cfg = LlamaConfig.tiny()  # 4 query heads in 2 KV groups, head_dim 16
    d, hd = cfg.hidden_size, cfg.head_dim
    wq, wk, wv = (np.random.default_rng(i).normal(size=(d, n * hd)) for i, n in enumerate((4, 2, 2)))
    fused = fuse_qkv(wq, wk, wv, 2, hd, xp=np)
    assert fused.shape == (d, 2, 4, hd)  # per KV head: 2 queries, its key, its value
    np.testing.assert_array_equal(fused[:, 1, 0], wq[:, 2 * hd:3 * hd])  # query head 2 is in KV group 1
    np.testing.assert_array_equal(fused[:, 1, 2], wk[:, hd:])
    for a, b in zip(split_qkv(fused, 4), (wq, wk, wv)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("scan", [True, False])
def test_trainable_layers_freezes_everything_below_the_top_k(scan):
    """trainable_layers = k: the same forward pass; exactly zero gradient for the embedding (tied output
    included) and the lower layers, a non-zero one for the top k and the final norm."""
    import dataclasses
    import re

    from murphyjax.align import core
    from murphyjax.llm import init

    cfg = LlamaConfig.tiny(num_layers=3, scan_layers=scan)
    ids = jax.random.randint(jax.random.key(1), (2, 6), 0, cfg.vocab_size)
    mask = jnp.ones((2, 6), bool)
    g_all, params = core.split(init(cfg, 0))
    g_top, _ = core.split(init(dataclasses.replace(cfg, trainable_layers=1), 0))

    def loss(g, p):
        return jnp.mean(core.completion_logps(core.forward(g, p, ids, mask), ids, mask))

    np.testing.assert_array_equal(np.asarray(core.forward(g_all, params, ids, mask)),
                                  np.asarray(core.forward(g_top, params, ids, mask)))
    flat = {"/".join(map(str, k)): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(
        jax.grad(lambda p: loss(g_top, p))(params))[0]}
    full = {"/".join(map(str, k)): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(
        jax.grad(lambda p: loss(g_all, p))(params))[0]}
    for name, g in flat.items():
        if "embed" in name:
            assert not g.any(), name
        elif "final_norm" in name:
            np.testing.assert_allclose(g, full[name], rtol=1e-5, atol=1e-7)
        elif scan:  # stacked (layers, ...): rows 0-1 frozen, row 2 trained
            assert not g[:2].any() and g[2].any(), name
            np.testing.assert_allclose(g[2], full[name][2], rtol=1e-4, atol=1e-7)
        else:
            found = re.search(r"\['layers'\]/\[(\d+)\]", name)
            layer = int(found.group(1)) if found else None
            assert (g.any() if layer == 2 else not g.any()), name
    with pytest.raises(ValueError, match="trainable_layers"):
        LlamaConfig.tiny(num_layers=3, trainable_layers=4)


@pytest.mark.parametrize("scan", [True, False])
def test_a_part_of_the_stack_continues_from_its_inputs(scan):
    from murphyjax.llm import init

    cfg = LlamaConfig.tiny(num_layers=3, scan_layers=scan)
    m = init(cfg, 0)
    ids = jax.random.randint(jax.random.key(2), (2, 5), 0, cfg.vocab_size)
    mask = jnp.asarray([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]], bool)
    pos = positions_from_mask(mask)
    full, _ = m.hidden(ids, mask, pos)
    for k in (0, 1, 2):  # last = k < 3: the activations before the final norm
        x, _ = m.hidden(ids, mask, pos, last=k)
        h, _ = m.hidden(ids, mask, pos, inputs=x, first=k)
        np.testing.assert_allclose(np.asarray(h), np.asarray(full), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="first, last"):
        m.hidden(ids, mask, pos, first=2, last=1)
