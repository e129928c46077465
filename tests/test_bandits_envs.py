"""Environments of the bandit laboratory: statistics, exact gamma, tilting, eq. (1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from murphyjax.bandits import envs

F32 = jnp.float32


def test_two_world_gamma_exact_on_a_hand_example():
    # 3 contexts (the last one hard, mass 0.2), 2 actions; on the hard context world + prefers a0 by 0.7
    mu = jnp.array([0.5, 0.3, 0.2])
    hard = jnp.array([0.0, 0.0, 1.0])
    rp = jnp.array([[0.1, 0.9], [0.4, 0.2], [0.8, 0.1]])
    rm = jnp.array([[0.1, 0.9], [0.4, 0.2], [0.1, 0.8]])
    env = envs.two_world(mu, hard, rp, rm)
    assert float(envs.hard_mass(env)) == pytest.approx(0.2)
    assert float(envs.separation(env)) == pytest.approx(0.2 * 0.7, abs=1e-15)  # 0.14
    # V_+(pi^+) - V_+(pi^-) = gamma (the worlds share the easy contexts)
    ap, am = envs.optimal_actions(env.r_plus), envs.optimal_actions(env.r_minus)
    gap = envs.value(env.mu, env.r_plus, ap) - envs.value(env.mu, env.r_plus, am)
    assert float(gap) == pytest.approx(0.14, abs=1e-15)


def test_two_world_rejects_bad_input():
    mu, hard = jnp.array([0.5, 0.5]), jnp.array([0.0, 1.0])
    r = jnp.array([[0.1, 0.9], [0.8, 0.1]])
    with pytest.raises(ValueError, match="agree on easy"):
        envs.two_world(mu, hard, r, r.at[0, 0].set(0.3))
    with pytest.raises(ValueError, match="gamma > 0"):
        envs.two_world(mu, hard, r, r)
    with pytest.raises(ValueError, match="r_plus"):
        envs.two_world(mu, hard, r + 1.0, r)


@pytest.mark.parametrize("K,A,alpha", [(6, 3, 0.05), (21, 4, 0.3)])
def test_random_two_world_gamma_matches_monte_carlo(K, A, alpha):
    env = envs.random_two_world(jax.random.key(K), K, A, alpha)
    assert float(envs.hard_mass(env)) == pytest.approx(alpha, rel=1e-12)
    n = 400_000
    xs = np.random.default_rng(0).choice(K, size=n, p=np.asarray(env.mu))
    ap, am = np.asarray(envs.optimal_actions(env.r_plus)), np.asarray(envs.optimal_actions(env.r_minus))
    rp = np.asarray(env.r_plus)
    samp = np.abs(rp[xs, ap[xs]] - rp[xs, am[xs]]) * np.asarray(env.hard)[xs]
    assert abs(samp.mean() - float(envs.separation(env))) < 5 * samp.std() / np.sqrt(n)


def test_mixture_geometry_and_hard_mass():
    env = envs.mixture(jax.random.key(1), 7, 0.05, d_max=12)
    M = jnp.stack([env.theta, env.upsilon, env.xi])
    np.testing.assert_allclose(np.asarray(M @ M.T), np.eye(3), atol=1e-6)
    assert float(jnp.abs(M[:, 7:]).max()) == 0.0  # inactive coordinates stay zero
    n = 200_000
    x, z = envs.sample_mixture(jax.random.key(2), env, n)
    assert x.dtype == F32 and z.dtype == F32
    # hard mass alpha within 5 binomial sd
    assert abs(float(z.mean()) - 0.05) < 5 * np.sqrt(0.05 * 0.95 / n)
    # hard component: mean mu_h = theta + 3 xi; easy: mean 0
    np.testing.assert_allclose(np.asarray(x[z > 0].mean(0)), np.asarray(env.mu_h), atol=0.03)
    np.testing.assert_allclose(np.asarray(x[z == 0].mean(0)), 0.0, atol=0.01)
    # rewards in [0, 1], gamma = alpha * s exactly; Monte Carlo of the definition agrees
    r = envs.rewards(env, x, z, 1.0)
    assert float(r.min()) >= 0.0 and float(r.max()) <= 1.0
    rp_best = jnp.max(r, -1)
    r_minus_pick = jnp.where(envs.reward_gap(env, x, z, -1.0) > 0, r[:, 1], r[:, 0])
    gamma_mc = float(jnp.mean((rp_best - r_minus_pick) * z))
    assert float(envs.mixture_separation(env)) == pytest.approx(0.05)
    assert abs(gamma_mc - 0.05) < 5 * np.sqrt(0.05 * 0.95 / n)


def test_hard_posterior_is_calibrated():
    env = envs.mixture(jax.random.key(3), 10, 0.1)
    x, z = envs.sample_mixture(jax.random.key(4), env, 200_000)
    p = envs.hard_posterior(env, x)
    for lo, hi in [(0.0, 0.1), (0.1, 0.5), (0.5, 0.9), (0.9, 1.0)]:
        sel = (p >= lo) & (p < hi)
        m = int(sel.sum())
        assert abs(float(z[sel].mean()) - float(p[sel].mean())) < 5 * np.sqrt(0.25 / m) + 1e-3


def test_tilt_linear_matches_importance_weights():
    """Section 3.4: rho(lambda) closed form for a linear score vs self-normalised weights."""
    env = envs.mixture(jax.random.key(5), 6, 0.05)
    b = 0.4 * env.theta + 0.3 * env.xi
    x, z = envs.sample_mixture(jax.random.key(6), env, 400_000)
    for lam in [0.5, 1.0, 2.0]:
        rho, shift = envs.tilt_linear(env, b, lam)
        w = jnp.exp(lam * (x @ b))
        rho_mc = float(jnp.sum(w * z) / jnp.sum(w))
        assert float(rho) == pytest.approx(rho_mc, rel=0.03)
        # and the tilted hard component is N(mu_h + lam b, I): weighted mean of hard x
        mean_mc = np.asarray(jnp.sum(w[:, None] * x * z[:, None], 0) / jnp.sum(w * z))
        np.testing.assert_allclose(mean_mc, np.asarray(env.mu_h + shift), atol=0.05)


def test_shifted_alpha():
    assert float(envs.shifted_alpha(0.1, 0.5)) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="below 1"):
        envs.shifted_alpha(0.6, 1.0)
    with pytest.raises(ValueError, match="rho"):
        envs.shifted_alpha(0.1, -0.5)


def test_multi_objective_law_eq1_and_the_stronger_constant():
    env = envs.random_three_objective(jax.random.key(7), 30, 0.1, margin=0.2)
    m = envs.objective_margins(env)
    assert float(m.min()) >= 0.2 - 1e-12
    # eq. (1) for random stochastic policies and for each objective's own optimum
    pols = jax.nn.softmax(3 * jax.random.normal(jax.random.key(8), (300, 30, 3)), -1)
    det = jnp.stack([jax.nn.one_hot(jnp.argmax(env.g[j], -1), 3) for j in range(3)])
    tot = jax.vmap(lambda p: jnp.sum(envs.objective_regrets(env, p)))(jnp.concatenate([pols, det]))
    assert float(tot.min()) >= float(envs.multi_objective_bound(env, stronger=True)) - 1e-12
    assert float(envs.multi_objective_bound(env, stronger=True)) == pytest.approx(2 * 0.1 * float(m.min()))
    # pi^(j) has zero regret for objective j
    for j in range(3):
        assert float(envs.objective_regrets(env, det[j])[j]) == pytest.approx(0.0, abs=1e-12)
