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
