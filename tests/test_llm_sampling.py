"""The KV-cache sampler: its log-probs equal the training log-probs, truncation semantics, stops, padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from murphyjax.llm import LlamaConfig, SamplingConfig, forward, init, sample, sequence_logprobs
from murphyjax.llm.sampling import _truncate

CFG = LlamaConfig.tiny()
N = 6


@pytest.fixture(scope="module")
def model():
    return init(CFG, seed=0)


@pytest.fixture(scope="module")
def prompts():
    ids = jax.random.randint(jax.random.key(5), (3, 7), 0, CFG.vocab_size, jnp.int32)
    mask = jnp.asarray([[0, 0, 0, 1, 1, 1, 1], [1] * 7, [0, 1, 1, 1, 1, 1, 1]], bool)  # left-padded
    return ids, mask


def rescore(model, out):
    ids, mask, completion = out.sequences()
    return sequence_logprobs(model, ids, mask, completion)[:, -N:]


def test_sampler_logprobs_equal_training_logprobs_at_temperature_one(model, prompts):
    out = sample(model, *prompts, jax.random.key(0), SamplingConfig(max_new_tokens=N))
    assert out.tokens.shape == (3, N) and out.logprobs.dtype == jnp.float32
    np.testing.assert_allclose(out.logprobs, rescore(model, out), atol=1e-5)
    np.testing.assert_array_equal(out.sampling_logprobs, out.logprobs)  # q == pi at T=1, no truncation
    assert bool(out.mask.all()) and bool((out.logprobs < 0).all())


def test_other_temperatures_report_both_distributions(model, prompts):
    t = 0.7
    out = sample(model, *prompts, jax.random.key(1), SamplingConfig(max_new_tokens=N, temperature=t))
    # `logprobs` stay the policy's (T=1) log-probs: what a training step recomputes ...
    np.testing.assert_allclose(out.logprobs, rescore(model, out), atol=1e-5)
    # ... `sampling_logprobs` are those of softmax(logits / T), recomputed here from a full forward pass.
    ids, mask, _ = out.sequences()
    logits = forward(model, ids, mask)[:, -N - 1:-1] / t
    lq = jnp.take_along_axis(jax.nn.log_softmax(logits), out.tokens[..., None], -1)[..., 0]
    np.testing.assert_allclose(out.sampling_logprobs, lq, atol=1e-5)
    assert float(jnp.max(jnp.abs(out.sampling_logprobs - out.logprobs))) > 1e-2  # they really differ


def test_top_k_samples_inside_the_top_k_and_renormalises(model, prompts):
    k = 3
    out = sample(model, *prompts, jax.random.key(2), SamplingConfig(max_new_tokens=N, top_k=k))
    ids, mask, _ = out.sequences()
    logits = forward(model, ids, mask)[:, -N - 1:-1]
    top = jax.lax.top_k(logits, k)[0]
    chosen = jnp.take_along_axis(logits, out.tokens[..., None], -1)[..., 0]
    assert bool((chosen >= top[..., -1]).all())
    renorm = chosen - jax.nn.logsumexp(top, -1)  # log of the renormalised top-k distribution
    np.testing.assert_allclose(out.sampling_logprobs, renorm, atol=1e-5)
    np.testing.assert_allclose(out.logprobs, rescore(model, out), atol=1e-5)
    assert bool((out.sampling_logprobs >= out.logprobs - 1e-6).all())  # truncation only removes mass


@pytest.mark.parametrize("top_p, kept", [(0.3, [0]), (0.7, [0, 1]), (0.85, [0, 1, 2]), (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_smallest_nucleus_reaching_p(top_p, kept):
    z = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]], jnp.float32))
    out = _truncate(z, 0, top_p)
    assert np.flatnonzero(np.isfinite(np.asarray(out[0]))).tolist() == kept


def test_top_k_truncation_written_out():
    z = jnp.asarray([[1.0, 4.0, 3.0, 2.0]], jnp.float32)
    assert np.isfinite(np.asarray(_truncate(z, 2, 1.0)[0])).tolist() == [False, True, True, False]


def test_greedy_is_argmax_and_stops_at_stop_tokens(model, prompts):
    out = sample(model, *prompts, jax.random.key(3), SamplingConfig(max_new_tokens=N, temperature=0.0))
    ids, mask, _ = out.sequences()
    logits = forward(model, ids, mask)[:, -N - 1:-1]
    np.testing.assert_array_equal(out.tokens, jnp.argmax(logits, -1))
    assert float(jnp.abs(out.sampling_logprobs).max()) == 0.0  # greedy: a point mass
    stop = int(out.tokens[0, 1])  # row 0 emits this token second
    first = np.asarray(out.tokens == stop).argmax(1)
    hit = np.asarray((out.tokens == stop).any(1))
    stopped = sample(model, *prompts, jax.random.key(3),
                     SamplingConfig(max_new_tokens=N, temperature=0.0, stop_tokens=(stop,), pad_id=-1))
    for b in range(3):
        n = first[b] + 1 if hit[b] else N
        assert stopped.mask[b].tolist() == [True] * n + [False] * (N - n)
        np.testing.assert_array_equal(stopped.tokens[b, :n], out.tokens[b, :n])
        assert (np.asarray(stopped.tokens[b, n:]) == -1).all() and (np.asarray(stopped.logprobs[b, n:]) == 0).all()


def test_left_right_and_no_padding_give_the_same_completion(model, prompts):
    ids, mask = prompts
    cfg = SamplingConfig(max_new_tokens=N, temperature=1.0, top_p=0.9)
    left = sample(model, ids, mask, jax.random.key(4), cfg)
    # the same prompts right-padded: rows rolled so the padding is at the end
    n_pad = np.asarray(~mask).sum(1)
    right_ids = jnp.stack([jnp.roll(ids[b], -int(n_pad[b])) for b in range(3)])
    right_mask = jnp.stack([jnp.roll(mask[b], -int(n_pad[b])) for b in range(3)])
    right = sample(model, right_ids, right_mask, jax.random.key(4), cfg)
    np.testing.assert_array_equal(right.tokens, left.tokens)
    np.testing.assert_allclose(right.logprobs, left.logprobs, atol=1e-5)
    # row 0 alone, unpadded (greedy: the random stream depends on the batch shape)
    g = SamplingConfig(max_new_tokens=N, temperature=0.0)
    alone = sample(model, ids[:1, 3:], None, jax.random.key(0), g)
    batched = sample(model, ids, mask, jax.random.key(0), g)
    np.testing.assert_array_equal(alone.tokens[0], batched.tokens[0])
    np.testing.assert_allclose(alone.logprobs[0], batched.logprobs[0], atol=1e-5)


def test_same_key_same_samples_new_key_new_samples(model, prompts):
    cfg = SamplingConfig(max_new_tokens=N)
    a, b = (sample(model, *prompts, jax.random.key(7), cfg) for _ in range(2))
    c = sample(model, *prompts, jax.random.key(8), cfg)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)


@pytest.mark.parametrize("bad, msg", [(dict(temperature=-1.0), "temperature"), (dict(top_p=0.0), "top_p"),
                                      (dict(top_k=-2), "top_k"), (dict(max_new_tokens=0), "max_new_tokens")])
def test_sampling_config_validation(bad, msg):
    with pytest.raises(ValueError, match=msg):
        SamplingConfig(**bad)
