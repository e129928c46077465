"""Array-level alignment losses (murphyjax/losses.py): golden values, log 2 at init, KL estimators."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from murphyjax import losses as L

PC, PR, RC, RR = jnp.array([-10.0]), jnp.array([-12.0]), jnp.array([-11.0]), jnp.array([-11.0])


def sp(x):
    return math.log1p(math.exp(x))


def test_dpo_golden_values_and_metrics():
    loss, m = L.dpo_loss(PC, PR, RC, RR, 0.1)
    np.testing.assert_allclose(loss, sp(-0.2), rtol=1e-6)
    np.testing.assert_allclose(loss, 0.5981388693815918, rtol=1e-6)
    np.testing.assert_allclose([m["rewards/chosen"], m["rewards/rejected"], m["rewards/margins"], m["rewards/accuracies"]],
                               [0.1, -0.1, 0.2, 1.0], rtol=1e-6)
    np.testing.assert_allclose([m["logps/chosen"], m["logps/rejected"]], [-10.0, -12.0])
    cd, _ = L.dpo_loss(PC, PR, RC, RR, 0.1, label_smoothing=0.1)
    np.testing.assert_allclose(cd, 0.9 * sp(-0.2) + 0.1 * sp(0.2), rtol=1e-6)
    rb, _ = L.dpo_loss(PC, PR, RC, RR, 0.1, label_smoothing=0.1, robust=True)
    np.testing.assert_allclose(rb, (0.9 * sp(-0.2) - 0.1 * sp(0.2)) / 0.8, rtol=1e-6)


def test_dpo_is_log2_at_initialisation_with_the_right_gradient():
    rng = np.random.default_rng(0)
    pc, pr = jnp.asarray(rng.normal(-50, 5, 8)), jnp.asarray(rng.normal(-50, 5, 8))
    loss, m = L.dpo_loss(pc, pr, pc, pr, 0.1)
    np.testing.assert_allclose(loss, math.log(2), rtol=1e-12)
    assert float(m["rewards/margins"]) == 0.0 and float(m["rewards/accuracies"]) == 0.0
    g = jax.grad(lambda x: L.dpo_loss(x, pr, pc, pr, 0.1)[0])(pc)
    np.testing.assert_allclose(g, -0.1 / 2 / 8, rtol=1e-12)  # -beta sigma(0) / B
    for div in L.F_DIVERGENCES:
        np.testing.assert_allclose(L.fdpo_loss(pc, pr, pc, pr, 0.1, div)[0], math.log(2), rtol=1e-12)
    np.testing.assert_allclose(L.bradley_terry_loss(pc, pc)[0], math.log(2), rtol=1e-12)


def test_ipo_and_fdpo_golden_values():
    np.testing.assert_allclose(L.ipo_loss(PC, PR, RC, RR, 0.5)[0], 1.0)  # (2 - 1)^2
    np.testing.assert_allclose(L.ipo_loss(PC, PC, PC, PC, 0.5)[0], 1.0)  # 1/(4 tau^2) at init
    # reverse KL is DPO
    np.testing.assert_allclose(L.fdpo_loss(PC, PR, RC, RR, 0.1, "reverse_kl")[0], L.dpo_loss(PC, PR, RC, RR, 0.1)[0], rtol=1e-12)
    # JS with log-ratios (+1, -1): f'(e) - f'(1/e) = 1 exactly
    np.testing.assert_allclose(L.fdpo_loss(PC, PR, RC, RR, 0.1, "js")[0], sp(-0.1), rtol=1e-6)
    np.testing.assert_allclose(L.fdpo_loss(PC, PR, RC, RR, 0.1, "forward_kl")[0], sp(-0.1 * (math.e - 1 / math.e)), rtol=1e-6)
    a = 0.5
    diff = (1 - math.exp(-a)) / a - (1 - math.exp(a)) / a
    np.testing.assert_allclose(L.fdpo_loss(PC, PR, RC, RR, 0.1, "alpha", alpha=a)[0], sp(-0.1 * diff), rtol=1e-6)


def test_kl_estimators_golden_and_unbiased():
    pol, ref = jnp.array([-1.0]), jnp.array([-2.0])
    np.testing.assert_allclose(L.kl_per_token(pol, ref, "k1"), [1.0])
    np.testing.assert_allclose(L.kl_per_token(pol, ref, "k2"), [0.5])
    np.testing.assert_allclose(L.kl_per_token(pol, ref, "k3"), [math.exp(-1)], rtol=1e-12)
    # unbiasedness of k1 and k3 against the exact KL of two categoricals
    k = jax.random.split(jax.random.key(0), 3)
    lp = jax.nn.log_softmax(jax.random.normal(k[0], (10,)))
    lq = jax.nn.log_softmax(jax.random.normal(k[1], (10,)))
    exact = float(L.exact_kl_per_token(lp, lq))
    y = jax.random.categorical(k[2], lp, shape=(400000,))
    for est in ("k1", "k3"):
        v = L.kl_per_token(lp[y], lq[y], est)
        se = float(jnp.std(v)) / math.sqrt(v.size)
        assert abs(float(jnp.mean(v)) - exact) < 4 * se, est
    assert float(jnp.min(L.kl_per_token(lp[y], lq[y], "k3"))) >= 0.0
    assert float(jnp.min(L.kl_per_token(lp[y], lq[y], "k1"))) < 0.0  # k1 can be negative per token


def test_rl_losses_golden():
    old = jnp.zeros((1, 2))
    new = jnp.full((1, 2), math.log(1.5))
    mask = jnp.ones((1, 2))
    loss, m = L.clipped_policy_loss(new, old, jnp.array([1.0]), mask, 0.2)
    np.testing.assert_allclose(loss, -1.2, rtol=1e-12)
    np.testing.assert_allclose(m["clip_fraction"], 1.0)
    loss, _ = L.clipped_policy_loss(new, old, jnp.array([-1.0]), mask, 0.2)
    np.testing.assert_allclose(loss, 1.5, rtol=1e-12)
    np.testing.assert_allclose(L.group_advantages(jnp.array([1.0, 2.0, 3.0, 4.0]), 2, eps=0.0), [-1, 1, -1, 1])
    with pytest.raises(ValueError, match=r"group_size must divide the batch \(4\); got 3"):
        L.group_advantages(jnp.ones(4), 3)
    # GRPO at pi == pi_old == pi_ref: policy loss -mean(A) = 0 with centred A, KL 0
    lg = jnp.full((2, 3), -1.3)
    gl, gm = L.grpo_loss(lg, lg, lg, jnp.array([0.5, -0.5]), jnp.ones((2, 3)), beta=0.04)
    np.testing.assert_allclose([gl, gm["kl"], gm["kl_k3"]], [0.0, 0.0, 0.0], atol=1e-12)


def test_gae_and_kl_penalised_rewards():
    r = jnp.array([[0.0, 0.0, 1.0, 0.0]])
    v = jnp.array([[0.5, 0.5, 0.5, 9.0]])
    mask = jnp.array([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = L.gae(r, v, mask, gamma=1.0, lam=1.0)
    np.testing.assert_allclose(adv, [[0.5, 0.5, 0.5, 0.0]], atol=1e-12)  # return-to-go 1 minus V
    np.testing.assert_allclose(ret[0, :3], [1.0, 1.0, 1.0], atol=1e-12)
    tok, m = L.kl_penalized_rewards(jnp.array([2.0]), jnp.array([[-1.0, -1.0, -1.0, 0.0]]), jnp.array([[-2.0, -1.0, -1.0, 0.0]]), mask, 0.1, "k1")
    np.testing.assert_allclose(tok, [[-0.1, 0.0, 2.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(m["kl"], 1.0)
    np.testing.assert_allclose(m["kl_k1"], 1.0)


def test_masked_nll_and_bad_inputs():
    loss, m = L.masked_nll(jnp.array([[-1.0, -2.0, -9.0]]), jnp.array([[1.0, 1.0, 0.0]]))
    np.testing.assert_allclose(loss, 1.5)
    with pytest.raises(ValueError, match=r"beta must be > 0; got 0.0"):
        L.dpo_loss(PC, PR, RC, RR, 0.0)
    with pytest.raises(ValueError, match=r"label_smoothing must lie in \[0, 0.5\)"):
        L.dpo_loss(PC, PR, RC, RR, 0.1, label_smoothing=0.5)
    with pytest.raises(ValueError, match=r"divergence must be one of reverse_kl, forward_kl, js, alpha"):
        L.fdpo_loss(PC, PR, RC, RR, 0.1, "hellinger")
    with pytest.raises(ValueError, match=r"estimator must be one of k1, k2, k3"):
        L.kl_per_token(PC, PR, "k4")


def test_losses_jit():
    f = jax.jit(lambda a, b, c, d: L.dpo_loss(a, b, c, d, 0.1))
    loss, m = f(PC, PR, RC, RR)
    np.testing.assert_allclose(loss, 0.5981388693815918, rtol=1e-6)


def test_dpo_margin_golden_values():
    # z = beta h - m with beta h = 0.2: m = -0.3 gives softplus(-0.5), m = 0.2 gives log 2
    np.testing.assert_allclose(L.dpo_loss(PC, PR, RC, RR, 0.1, margin=-0.3)[0], sp(-0.5), rtol=1e-6)
    np.testing.assert_allclose(L.dpo_loss(PC, PR, RC, RR, 0.1, margin=-0.3)[0], 0.47407698418010663, rtol=1e-6)
    np.testing.assert_allclose(L.dpo_loss(PC, PR, RC, RR, 0.1, margin=jnp.array([0.2]))[0], math.log(2), rtol=1e-6)
    # the margin does not enter the reported implicit rewards
    _, m = L.dpo_loss(PC, PR, RC, RR, 0.1, margin=1.0)
    np.testing.assert_allclose(m["rewards/margins"], 0.2, rtol=1e-6)
