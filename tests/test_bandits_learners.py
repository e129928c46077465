"""Learners and diagnostics: Newton logistic fit, pi_lambda, flaggers, Section 5.6 estimates, D1 curves."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from murphyjax.bandits import diagnostics as D
from murphyjax.bandits import envs, learners

F32 = jnp.float32


def _data(n=3000, d=5, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(k1, (n, d), F32)
    beta = jnp.arange(1, d + 2, dtype=F32) / d
    X = learners.features(x)
    y = (jax.random.uniform(k2, (n,)) < jax.nn.sigmoid(X @ beta)).astype(F32)
    w = (jax.random.uniform(k3, (n,)) < 0.8).astype(F32)
    return X, y, w


def test_newton_fit_matches_scipy_optimum():
    X, y, w = _data()
    beta, m = learners.fit_logistic(X, y, w, ridge=2.0, iters=10)
    assert beta.dtype == F32
    Xn, yn, wn = (np.asarray(a, np.float64) for a in (X, y, w))
    f = lambda b: np.sum(wn * (np.logaddexp(0, Xn @ b) - yn * (Xn @ b))) + b @ b
    ref = minimize(f, np.zeros(X.shape[1]), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(np.asarray(beta), ref, atol=2e-4)
    assert float(m["grad_norm"]) < 1e-2 and float(m["labels"]) == float(w.sum())


def test_warm_start_converges_in_few_steps_and_masked_rows_do_not_count():
    X, y, w = _data(seed=1)
    full, _ = learners.fit_logistic(X, y, w, iters=12)
    half, _ = learners.fit_logistic(X[:1500], y[:1500], w[:1500], iters=8)
    warm, _ = learners.fit_logistic(X, y, w, iters=3, beta0=half)
    np.testing.assert_allclose(np.asarray(warm), np.asarray(full), atol=1e-4)
    # zero weight = row absent
    masked, _ = learners.fit_logistic(X, y, w.at[1500:].set(0.0), iters=10)
    np.testing.assert_allclose(np.asarray(masked), np.asarray(half), atol=1e-4)


def test_spd_solve_matches_float64_solve_batched():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((4, 200, 51)).astype(np.float32)
    A = np.einsum("bni,bnj->bij", X, X) + np.eye(51, dtype=np.float32)  # a ridge Hessian's shape
    b = rng.standard_normal((4, 51)).astype(np.float32)
    x = jax.jit(jax.vmap(learners.spd_solve))(jnp.asarray(A), jnp.asarray(b))
    assert x.dtype == F32
    ref = np.linalg.solve(A.astype(np.float64), b.astype(np.float64)[..., None])[..., 0]
    np.testing.assert_allclose(np.asarray(x), ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_policy_and_margin_query():
    s = jnp.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(np.asarray(learners.policy(s, 0.0)), 0.5)
    np.testing.assert_allclose(np.asarray(learners.policy(s, 1.0)), [0.11920292, 0.5, 0.95257413], rtol=1e-6)
    q = learners.margin_query(jnp.array([0.1, -0.2, 5.0, -3.0]), jnp.array([-1.0, 0.5, 2.0, -0.1]), 0.5)
    np.testing.assert_array_equal(np.asarray(q), [1.0, 1.0, 0.0, 0.0])  # |s| <= median(|ref|) = 0.75


def test_estimates_from_audit_on_known_arrays():
    z = jnp.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], F32)
    agree = jnp.array([1, 1, 1, 0, 1, 1, 1, 1, 0, 1], F32)
    est = learners.estimate_from_audit(z, agree, 0.5 * z)
    assert float(est["alpha"]) == pytest.approx(0.4)
    assert float(est["eps"]) == pytest.approx(0.25)  # 3 of 4 hard labels agree
    assert float(est["gamma"]) == pytest.approx(0.2)  # alpha * margin 0.5
    assert float(est["alpha_se"]) == pytest.approx(math.sqrt(0.24 / 10))


def test_flaggers_find_the_hard_set():
    env = envs.mixture(jax.random.key(2), 10, 0.1)
    x, z = envs.sample_mixture(jax.random.key(3), env, 4000)
    best = envs.reward_gap(env, x, z) > 0
    beta_res = learners.residual_flagger(x, (x @ env.theta) >= 0, best)  # a proxy that learned theta
    u = learners.features(x) @ beta_res
    t = learners.keep_threshold(u, 0.2)
    flag = (u >= t).astype(F32)
    tau, phi = learners.flag_rates(flag, z)
    assert float(flag.mean()) == pytest.approx(0.2, abs=0.01)
    assert float(tau) > 0.6 and float(phi) < 0.15  # residuals are large exactly on hard contexts
    # the exact posterior is the MLR score of B.7: the best flagger at this keep rate
    ub = envs.hard_logit(env, x)
    tb, pb = learners.flag_rates((ub >= learners.keep_threshold(ub, 0.2)).astype(F32), z)
    assert float(tb) >= float(tau) - 0.02
    ma, mb = learners.view_masks(env.mask)
    assert float(jnp.sum(ma * mb)) == 0.0 and float(jnp.sum(ma + mb)) == 10.0


def test_keep_threshold_agrees_with_theory_score_flagger():
    """B.7: thresholding u at the keep rate is the theory's Neyman-Pearson score flagger."""
    from murphyjax import theory as T

    env = envs.mixture(jax.random.key(9), 6, 0.1)
    x, z = envs.sample_mixture(jax.random.key(10), env, 1000)
    u = envs.hard_logit(env, x)
    ours_tau, ours_phi = learners.flag_rates((u >= learners.keep_threshold(u, 0.15)).astype(F32), z)
    th = T.score_flagger(np.asarray(u, np.float64), np.asarray(z, np.float64), np.full(1000, 1e-3), 0.15)
    n_hard = float(z.sum())
    assert abs(float(ours_tau) - float(th["tau"])) <= 1.0 / n_hard + 1e-9  # at most one context apart
    assert abs(float(ours_phi) - float(th["phi"])) <= 1.0 / (1000 - n_hard) + 1e-9


def test_d1_curves_on_a_hand_example():
    s_e, d_e = jnp.array([2.0, -1.0]), jnp.array([1.0, 1.0])  # one easy context right, one wrong
    s_h, d_h = jnp.array([1.0]), jnp.array([-1.0])  # the hard context wrong
    lam = jnp.array([0.0, jnp.inf], F32)
    c = D.d1_curves(s_e, s_h, d_e, d_h, lam, 0.2, 1.0)
    # lambda = 0: uniform policy, regret 1/2 everywhere -> G = 0.5
    assert float(c["G"][0]) == pytest.approx(0.5)
    # greedy: easy regret (0 + 1)/2 = 0.5 weighted 0.8; hard regret 1 weighted 0.2
    assert float(c["G_easy"][1]) == pytest.approx(0.4)
    assert float(c["G_hard"][1]) == pytest.approx(0.2)
    assert float(c["V"][1]) == pytest.approx(0.4)
    # proxy: V_hat(greedy) = 1/2 + (0.8 * mean(|s_e|) + 0.2 |s_h|)/2 = 1/2 + (1.2 + 0.2)/2
    assert float(c["V_hat"][1]) == pytest.approx(1.2)
    rho, ess = D.tilted_hard_mass(s_e, s_h, jnp.array([0.0, 1.0]), 0.2)
    w_e = 0.8 * np.exp([2.0, -1.0]) / 2
    w_h = 0.2 * np.exp(1.0)
    assert float(rho[0]) == pytest.approx(0.2) and float(rho[1]) == pytest.approx(w_h / (w_h + w_e.sum()), rel=1e-6)


def test_first_reach_and_quantiles():
    vals = np.array([[0.5, 0.2, 0.05], [0.5, 0.4, 0.3]])
    np.testing.assert_array_equal(D.first_reach(vals, [10, 20, 40], 0.25), [20.0, np.inf])
    m, lo, hi = D.quantile_summary(np.array([1.0, 2.0, 3.0, np.inf, np.inf]))
    assert m == 3.0 and lo == 1.0 and hi == np.inf
    m, lo, hi = D.quantile_summary(np.arange(11.0))
    assert (m, lo, hi) == (5.0, 0.5, 9.5)
