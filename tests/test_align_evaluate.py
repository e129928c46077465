"""The fused evaluation: prompts prefilled once, completions sampled and scored against those states, and
the same numbers as full forward passes over prompt + completion."""

import jax
import numpy as np
import pytest

from murphyjax.align import core, evaluate
from murphyjax.llm import LlamaConfig, SamplingConfig, init, sample

CFG = LlamaConfig.tiny(vocab_size=40, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                       head_dim=8, max_seq_len=32, scan_layers=False)
P, N = 7, 6


@pytest.fixture(scope="module")
def world():
    g, pol = core.split(init(CFG, 0))
    _, ref = core.split(init(CFG, 1))
    _, lm = core.split(init(CFG, 2))
    head = {"w": jax.random.normal(jax.random.key(3), (CFG.hidden_size,)) * 0.3, "b": np.float32(0.1)}
    rng = np.random.default_rng(0)
    lens = [7, 3, 5, 1, 6]
    ids = np.zeros((5, P), np.int32)
    mask = np.zeros((5, P), bool)
    for i, n in enumerate(lens):  # left-padded prompts of different lengths
        ids[i, P - n:] = rng.integers(3, CFG.vocab_size, n)
        mask[i, P - n:] = True
    return g, pol, ref, {"lm": lm, "head": head}, ids, mask


@pytest.mark.parametrize("temperature, batch", [(1.0, 4), (0.7, 64)])
def test_fused_scores_equal_full_forward_passes(world, temperature, batch):
    g, pol, ref, rm, ids, mask = world
    scfg = SamplingConfig(max_new_tokens=N, temperature=temperature, stop_tokens=(2,), pad_id=0)
    res = evaluate.sample_scored(g, pol, ids, mask, jax.random.key(7), scfg, samples=2, batch=batch, rm_graphdef=g,
                                 rm_params=rm, ref_params=ref, temperature=temperature)
    seqs = res["seqs"]
    assert seqs.ids.shape == (10, P + N) and (seqs.cmask[:, P:] == res["tmask"]).all()
    for i in range(5):  # the two samples of a prompt complete that prompt
        for j in (0, 1):
            valid = mask[i]
            np.testing.assert_array_equal(seqs.ids[2 * i + j, :P][seqs.mask[2 * i + j, :P]], ids[i][valid])
    want_r = np.asarray(core.reward_scores(g, rm, seqs.ids, seqs.mask))
    np.testing.assert_allclose(res["proxy"], want_r, rtol=1e-5, atol=1e-5)
    want = core.kl_to_reference(g, pol, ref, seqs.ids, seqs.mask, seqs.cmask, temperature, prompt_len=P)
    for k in ("exact", "k1", "k3", "entropy"):
        np.testing.assert_allclose(res["kl"][k], np.asarray(want[k]), rtol=1e-4, atol=1e-5, err_msg=k)
    assert (res["kl"]["exact"] > 0).all()  # two different models: the exact KL is positive


def test_one_prefill_per_prompt_samples_like_the_sampler(world):
    """Sampling from prefilled states with repeats is the sampler's own program: the same samples as
    ``sample(..., repeats)`` from the same key, whose log-probs are the policy's own."""
    g, pol, _, _, ids, mask = world
    scfg = SamplingConfig(max_new_tokens=N, stop_tokens=(2,), pad_id=0)
    st = core.prompt_states(g, pol, ids, mask, N)
    a = core.rollout_from(g, pol, st, jax.random.key(4), scfg, 3)
    b = sample(core.merge(g, pol), ids, mask, jax.random.key(4), scfg, repeats=3)
    np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
    ids2, m2, c2 = (np.asarray(x) for x in b.sequences())
    lp = np.asarray(core.completion_logps(core.forward(g, pol, ids2, m2), ids2, c2))[:, P:]
    np.testing.assert_allclose(np.asarray(b.logprobs), lp, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="repeats"):
        sample(core.merge(g, pol), ids, mask, jax.random.key(4), scfg, repeats=0)


def test_state_cache_keeps_fixed_models_and_evicts_the_oldest(world):
    g, pol, ref, rm, ids, mask = world
    cache = evaluate.StateCache(size=2)
    a = cache.get(g, ref, ids, mask, 4, N)
    assert cache.get(g, ref, ids, mask, 4, N) is a and len(a) == 2  # 5 prompts in chunks of 4
    cache.get(g, pol, ids, mask, 4, N)
    cache.get(g, rm["lm"], ids, mask, 4, N)
    assert len(cache.entries) == 2 and cache.get(g, ref, ids, mask, 4, N) is not a


def _top_changed(params, other, split: int, stacked: bool):
    """``params`` with the layers from ``split`` up (and the final norm) taken from ``other``: a model that
    trained only its upper layers."""
    def pick(path, a, b):
        key = jax.tree_util.keystr(path)
        if "final_norm" in key:
            return b
        if "blocks" not in key:
            return a
        if stacked:
            return np.concatenate([np.asarray(a)[:split], np.asarray(b)[split:]])
        return b if int(key.split("['layers'][")[1].split("]")[0]) >= split else a
    return jax.tree_util.tree_map_with_path(pick, params, other)


@pytest.mark.parametrize("scan, temperature", [(False, 1.0), (True, 0.7)])
def test_a_shared_trunk_gives_the_full_passes_numbers(scan, temperature):
    """Policy, reference and reward model that train only their top layer share the trunk's work; the
    samples and every score equal the full passes' (the same key)."""
    cfg = LlamaConfig.tiny(vocab_size=40, hidden_size=32, intermediate_size=64, num_layers=3, num_heads=4,
                           num_kv_heads=2, head_dim=8, max_seq_len=32, scan_layers=scan, trainable_layers=2)
    split = 1
    g, ref = core.split(init(cfg, 1))
    pol = _top_changed(ref, core.split(init(cfg, 0))[1], split, scan)
    lm = _top_changed(ref, core.split(init(cfg, 2))[1], split, scan)
    rm = {"lm": lm, "head": {"w": jax.random.normal(jax.random.key(3), (32,)) * 0.3, "b": np.float32(0.1)}}
    assert core.shared_trunk(g, pol, ref, lm) == split
    assert core.shared_trunk(g, pol, core.split(init(cfg, 5))[1]) == 0  # another trunk
    rng = np.random.default_rng(1)
    ids = rng.integers(3, 40, (5, P)).astype(np.int32)
    mask = np.ones((5, P), bool)
    mask[1, :4] = mask[3, :6] = False
    scfg = SamplingConfig(max_new_tokens=N, temperature=temperature, stop_tokens=(2,), pad_id=0)
    kw = dict(samples=2, batch=4, rm_graphdef=g, rm_params=rm, ref_params=ref, temperature=temperature)
    shared = evaluate.sample_scored(g, pol, ids, mask, jax.random.key(7), scfg, **kw)
    full = evaluate.sample_scored(g, pol, ids, mask, jax.random.key(7), scfg, share_trunk=False, **kw)
    np.testing.assert_array_equal(shared["tokens"], full["tokens"])
    np.testing.assert_array_equal(shared["tmask"], full["tmask"])
    assert shared["tmask"][:, 1:].any()  # completions longer than one token
    np.testing.assert_allclose(shared["proxy"], full["proxy"], rtol=1e-5, atol=1e-6)
    for k in ("exact", "k1", "k3", "entropy"):
        np.testing.assert_allclose(shared["kl"][k], full["kl"][k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert (shared["kl"]["exact"] > 0).all()
    # the reference evaluated as the policy (the start of every curve; best-of-n's samples): its own states
    base = evaluate.sample_scored(g, ref, ids, mask, jax.random.key(8), scfg, **kw)
    base_full = evaluate.sample_scored(g, ref, ids, mask, jax.random.key(8), scfg, share_trunk=False, **kw)
    np.testing.assert_array_equal(base["tokens"], base_full["tokens"])
    np.testing.assert_allclose(base["kl"]["exact"], base_full["kl"]["exact"], rtol=1e-5, atol=1e-6)
    if temperature == 1.0:
        np.testing.assert_allclose(base["kl"]["exact"], 0.0, atol=1e-6)
    np.testing.assert_allclose(base["proxy"], base_full["proxy"], rtol=1e-5, atol=1e-6)


def test_a_cache_for_part_of_the_stack_is_the_full_cache_split():
    cfg = LlamaConfig.tiny(vocab_size=40, hidden_size=32, intermediate_size=64, num_layers=3, num_heads=4,
                           num_kv_heads=2, head_dim=8, max_seq_len=32, scan_layers=True)
    from murphyjax.llm.model import KVCache, positions_from_mask

    model = init(cfg, 0)
    ids = np.random.default_rng(0).integers(3, 40, (2, 5)).astype(np.int32)
    mask = np.ones((2, 5), bool)
    pos = positions_from_mask(mask)
    h, full = model.hidden(ids, mask, pos, KVCache.init(cfg, 2, 8))
    x, low = model.hidden(ids, mask, pos, KVCache.init(cfg, 2, 8, layers=1), last=1)
    h2, high = model.hidden(ids, mask, pos, KVCache.init(cfg, 2, 8, layers=2), inputs=x, first=1)
    np.testing.assert_allclose(np.asarray(h2), np.asarray(h), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([low.k, high.k]), np.asarray(full.k), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="cache holds 3 layers"):
        model.hidden(ids, mask, pos, KVCache.init(cfg, 2, 8), last=1)
