"""Catalogue of laws, C.7, multi-objective law and MAPS (theory/laws.py, multiobjective.py, maps.py)."""

import itertools

import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from hypothesis import given, settings

import murphyjax.theory as T


def model(seed, K=8):
    rng = np.random.default_rng(seed)
    mu = rng.dirichlet(np.ones(K))
    h = (rng.random(K) < 0.4).astype(float)
    h[0], h[1] = 1.0, 0.0
    return np.log(mu), rng.normal(size=K), h, rng.random(K), rng.random(K)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.floats(-3, 3))
def test_derivatives_against_autodiff(seed, lam):
    lm, s, h, r0, r1 = model(seed)
    tv = T.tilted_value(lm, s, r1, lam)
    np.testing.assert_allclose(jax.grad(lambda l: T.tilted_value(lm, s, r1, l)["value"])(lam), tv["derivative"], atol=1e-12)
    pv = T.proxy_true_divergence(lm, s, r1 + h, r1, lam)
    np.testing.assert_allclose(jax.grad(lambda l: T.proxy_true_divergence(lm, s, r1 + h, r1, l)["gap"])(lam), pv["slope"], atol=1e-12)
    ov = T.overoptimization(lm, s, h, r0, r1, lam)
    np.testing.assert_allclose(jax.grad(lambda l: T.overoptimization(lm, s, h, r0, r1, l)["value"])(lam), ov["derivative"], atol=1e-12)
    np.testing.assert_allclose(ov["derivative"] - ov["derivative_paper"], ov["omitted"], atol=1e-15)
    c7 = T.policy_value_derivative(lm, s, r0, r1, lam)
    np.testing.assert_allclose(jax.grad(lambda l: T.policy_value(lm, s, r0, r1, l))(lam), c7, atol=1e-12)


def test_c7_and_b4_errata_differ_from_the_derivative():
    lm, s, h, r0, r1 = model(0)
    true = float(T.policy_value_derivative(lm, s, r0, r1, 0.0))
    paper = float(T.policy_value_derivative_paper(lm, s, r0, r1, 0.0))
    assert abs(true - paper) > 1e-3
    ov = T.overoptimization(lm, s, h, r0, r1, np.linspace(0, 3, 31))
    assert float(np.max(np.abs(ov["omitted"]))) > 1e-3


def test_shift_value_written_out_and_range():
    v = T.shifted_value(0.1, 1.0, 0.8, 0.3)
    np.testing.assert_allclose(v["value"], 0.8 * 0.8 + 0.2 * 0.3)
    np.testing.assert_allclose(v["derivative"], 0.1 * (0.3 - 0.8))
    with pytest.raises(ValueError, match=r"rho must satisfy \(1 \+ rho\) alpha < 1, i.e. rho < 9"):
        T.shifted_value(0.1, 9.0, 0.8, 0.3)


def test_first_downturn():
    lams = np.linspace(0, 2, 5)
    np.testing.assert_allclose(T.first_downturn(lams, [1.0, 0.5, -0.5, -1.0, -2.0]), 0.75)
    assert np.isnan(T.first_downturn(lams, [1.0, 1.0, 0.5, 0.1, 0.0]))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_multiobjective_bound_holds_for_every_deterministic_policy(seed):
    rng = np.random.default_rng(seed)
    K = 5
    g = rng.random((3, K, 3))
    mu = rng.dirichlet(np.ones(K))
    S = T.disagreement_set(g)
    if not S.any():
        return
    b = T.multiobjective_bound(g, mu, constant="proof")
    assert b["k"] == 2
    P = np.eye(3)[np.array(list(itertools.product(range(3), repeat=K)))]
    tot = np.asarray(T.regrets(g, mu, P)).sum(-1)
    assert tot.min() >= float(b["bound"]) - 1e-14
    assert float(T.multiobjective_bound(g, mu, constant="paper")["bound"]) == pytest.approx(float(b["bound"]) / 2)


def test_multiobjective_validation():
    with pytest.raises(ValueError, match=r"eq. \(1\) needs 3 objectives and 3 actions"):
        T.multiobjective_bound(np.random.default_rng(0).random((3, 4, 2)), np.full(4, 0.25), constant="paper")
    with pytest.raises(ValueError, match=r"g must have shape \(J objectives, K contexts, A actions\)"):
        T.regrets(np.ones((3, 4)), np.full(4, 0.25), np.full((4, 3), 1 / 3))


def test_maps_flagger_penalty_projection_and_temperature():
    np.testing.assert_allclose(T.flagger_covariance(0.2, 0.9, 0.1), 0.2 * 0.8 * 0.8)
    np.testing.assert_allclose(T.flagger_beta_star(0.064, 0.2, 0.9, 0.1), 0.5)
    with pytest.raises(ValueError, match=r"tau must differ from phi"):
        T.flagger_beta_star(0.1, 0.2, 0.5, 0.5)
    lm, s, h, r0, r1 = model(5)
    mu = np.exp(lm)
    p = T.project_out_hard(s, h, mu)
    np.testing.assert_allclose(T.drift_at_zero(mu, h, p), 0.0, atol=1e-15)
    assert abs(float(T.residual_drift(lm, h, p, 1.5))) > 1e-6  # D.6
    tk = T.temperature_kl(lm, s, 1e-4)
    assert float(tk["rel_error"]) < 1e-2
    t = T.shaped_score(s, 2.0, aux=[r0], weights=[0.5], penalties=[h], betas=[0.3])
    np.testing.assert_allclose(t, 2 * s + 0.5 * r0 - 0.3 * h)


def test_maps_weights_constrained_solution():
    lm, s, h, r0, r1 = model(6, K=10)
    mu = np.exp(lm)
    S = np.stack([s, r0, r1, h * s])
    sol = T.maps_weights(S, r1, h, mu, tau0=0.01, radius=2.0)
    assert float(np.linalg.norm(sol["weights"])) <= 2.0 + 1e-12
    assert float(sol["correlation"]) >= 0.01 - 1e-12
    with pytest.raises(ValueError, match=r"tau0 must be <= radius"):
        T.maps_weights(S, r1, h, mu, tau0=100.0, radius=1.0)
