"""Tilting calculus (theory/tilting.py): written-out values, identities vs autodiff, bad inputs."""

import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import murphyjax.theory as T


def model(seed, K=7):
    rng = np.random.default_rng(seed)
    mu = rng.dirichlet(np.ones(K))
    return np.log(mu), rng.normal(size=K), (rng.random(K) < 0.4).astype(float), rng.random(K)


def test_bernoulli_tilt_written_out():
    lb = np.log([0.9, 0.1])
    s = np.array([0.0, 1.0])
    t = T.tilt(lb, s, math.log(9.0))
    np.testing.assert_allclose(t.probs, [0.5, 0.5], rtol=1e-14)
    np.testing.assert_allclose(t.log_partition, math.log(1.8), rtol=1e-14)
    np.testing.assert_allclose(t.kl(), math.log(5 / 3), rtol=1e-13)
    np.testing.assert_allclose(t.kl_direct(), math.log(5 / 3), rtol=1e-13)
    # KL(mu||q) = 0.9 log 1.8 + 0.1 log 0.2
    np.testing.assert_allclose(t.reverse_kl(), 0.9 * math.log(1.8) + 0.1 * math.log(0.2), rtol=1e-13)


def test_vectorised_shapes_and_batched_bases():
    rng = np.random.default_rng(1)
    lb = np.log(rng.dirichlet(np.ones(5), size=4))       # B = (4,), K = 5
    s = rng.normal(size=(4, 5))
    lam = np.linspace(-1, 1, 6).reshape(3, 2)
    t = T.tilt(lb, s, lam)
    assert t.probs.shape == (3, 2, 4, 5) and t.log_partition.shape == (3, 2, 4)
    assert t.kl().shape == (3, 2, 4) and t.mean(s).shape == (3, 2, 4)
    np.testing.assert_allclose(t.probs.sum(-1), 1.0, rtol=1e-14)
    one = T.tilt(lb[2], s[2], lam[1, 0])
    np.testing.assert_allclose(t.probs[1, 0, 2], one.probs, rtol=1e-14)


def test_zero_probability_outcomes():
    lb = np.array([np.log(0.5), -np.inf, np.log(0.5)])
    t = T.tilt(lb, [1.0, 100.0, -1.0], 2.0)
    assert t.probs[1] == 0.0
    assert np.isfinite(float(t.kl())) and np.isfinite(float(t.kl_direct()))
    np.testing.assert_allclose(t.kl(), t.kl_direct(), rtol=1e-13)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(-4, 4))
def test_identities_against_autodiff(seed, lam):
    lb, s, h, fx = model(seed)
    t = T.tilt(lb, s, lam)
    np.testing.assert_allclose(jax.grad(lambda l: T.log_partition(lb, s, l))(lam), t.mean(s), atol=1e-12)
    np.testing.assert_allclose(jax.grad(lambda l: T.tilt(lb, s, l).mean(fx))(lam), t.cov(fx, s), atol=1e-12)
    np.testing.assert_allclose(jax.grad(lambda l: T.tilt(lb, s, l).kl())(lam), t.dkl_dlam(), atol=1e-12)
    np.testing.assert_allclose(t.kl(), t.kl_direct(), atol=1e-12)
    d = T.hard_mass_drift(lb, s, h, lam)
    np.testing.assert_allclose(jax.grad(lambda l: T.hard_mass(lb, s, h, l))(lam), d["drift"], atol=1e-12)
    assert abs(float(d["drift"])) <= float(T.hard_mass_cs_bound(lb, s, h, lam)) + 1e-14


def test_vector_tilt_gradient_and_hessian():
    lb, s, _, fx = model(3)
    S = np.stack([s, fx], 1)
    th = np.array([0.4, -1.1])
    out = T.vector_tilt(lb, S, th)
    np.testing.assert_allclose(jax.grad(lambda x: T.vector_log_partition(lb, S, x))(th), out["mean"], atol=1e-13)
    np.testing.assert_allclose(jax.hessian(lambda x: T.vector_log_partition(lb, S, x))(th), out["cov"], atol=1e-13)


def test_i_projection_matches_target_and_is_vectorised():
    lb, s, _, _ = model(4)
    targets = np.array([s.min() + 0.1, float(np.exp(lb) @ s), s.max() - 0.1])
    lam, t = T.i_projection(lb, s, targets)
    np.testing.assert_allclose(t.mean(s), targets, atol=1e-12)
    np.testing.assert_allclose(lam[1], 0.0, atol=1e-10)
    assert lam[0] < 0 < lam[2]


def test_gaussian_and_exponential_closed_forms():
    g = T.gaussian_tilt(2.0, [1.0, 0.0], [[2.0, 0.5], [0.5, 1.0]], [1.0, -1.0])
    # Sigma a = (1.5, -0.5); a'Sigma a = 2
    np.testing.assert_allclose(g["mean"], [4.0, -1.0], rtol=1e-14)
    np.testing.assert_allclose(g["kl"], 4.0, rtol=1e-14)
    np.testing.assert_allclose(g["log_partition"], 2.0 * 1.0 + 0.5 * 4.0 * 2.0, rtol=1e-14)
    e = T.exponential_score_tilt(1.0, 2.0)
    np.testing.assert_allclose(e["mean"], 1.0)
    np.testing.assert_allclose(e["log_partition"], math.log(2.0))
    np.testing.assert_allclose(e["kl"], 1.0 - math.log(2.0), rtol=1e-14)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: T.tilt(np.log([0.5, 0.6]), [0.0, 1.0], 1.0), r"log_base must be normalised"),
        (lambda: T.tilt(np.log([0.5, 0.5]), [0.0, np.nan], 1.0), r"score must not contain NaN"),
        (lambda: T.tilt(np.log([0.5, 0.5]), [0.0, 1.0, 2.0], 1.0), r"shapes must broadcast"),
        (lambda: T.tilt(np.log([0.5, 0.5]), [0.0, 1.0], np.inf), r"lam must lie in \(-inf, inf\)"),
        (lambda: T.exponential_score_tilt(2.0, 2.0), r"lam must be < rate=2.0: the partition function .* diverges"),
        (lambda: T.exponential_score_tilt([0.5, 3.0], 2.0), r"diverges for lam >= rate"),
        (lambda: T.i_projection(np.log([0.5, 0.5]), [0.0, 1.0], 1.0), r"target_mean must lie strictly between"),
        (lambda: T.gaussian_tilt(1.0, [0.0], [[-1.0]], [1.0]), r"cov must be symmetric positive semi-definite"),
        (lambda: T.hard_mass(np.log([0.5, 0.5]), [0.0, 1.0], [0.0, 2.0], 1.0), r"hard must lie in \[0.0, 1.0\]"),
        (lambda: T.vector_tilt(np.log([0.5, 0.5]), np.ones((2, 2)), [1.0]), r"shapes must be log_base \(K,\), scores \(K, k\)"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_divergent_tilt_never_returns_inf_or_nan():
    for lam in [1.999999, 2.0, 5.0]:
        if lam < 2.0:
            out = T.exponential_score_tilt(lam, 2.0)
            assert all(np.isfinite(np.asarray(v)).all() for v in out.values())
        else:
            with pytest.raises(ValueError):
                T.exponential_score_tilt(lam, 2.0)


def _tilt_kl_exact(lb, s, lam, reverse=False):
    """KL(q_lam || mu) (or KL(mu || q_lam)) in 50-digit arithmetic on the given floats (mu renormalised)."""
    from decimal import Decimal, localcontext  # noqa: PLC0415

    with localcontext() as c:
        c.prec, c.Emax, c.Emin = 50, 10**9, -(10**9)
        lam = Decimal(float(lam))
        lb = [Decimal(float(a)) for a in lb]
        total = sum(a.exp() for a in lb).ln()
        lb = [a - total for a in lb]
        x = [lam * Decimal(float(b)) for b in s]
        top = max(a + b for a, b in zip(lb, x))
        A = top + sum((a + b - top).exp() for a, b in zip(lb, x)).ln()
        if reverse:
            return float(sum(a.exp() * (A - b) for a, b in zip(lb, x)))
        return float(sum((a + b - A).exp() * (b - A) for a, b in zip(lb, x)))


@pytest.mark.parametrize("seed, K", [(0, 3), (1, 12)])
def test_tilt_kl_has_no_cancellation_at_small_or_large_lambda(seed, K):
    # lam A' - A cancels both ways: KL ~ lam^2 Var/2 at small lam (30 % off at lam = 1e-8) and
    # both terms ~ lam max s at large lam
    lb, s, _, _ = model(seed, K)
    lams = np.array([1e-8, -1e-6, 1e-4, 0.3, -3.0, 10.0, 1e3, -1e3, 1e6])
    t = T.tilt(lb, s, lams)
    ref = np.array([_tilt_kl_exact(lb, s, lam) for lam in lams])
    rev = np.array([_tilt_kl_exact(lb, s, lam, reverse=True) for lam in lams])
    np.testing.assert_allclose(t.kl(), ref, rtol=1e-13)
    np.testing.assert_allclose(t.reverse_kl(), rev, rtol=1e-13)
    assert float(T.tilt(lb, s, 0.0).kl()) == 0.0 and float(T.tilt(lb, s, 0.0).reverse_kl()) == 0.0
    # the derivative identities still hold through the rewritten sums
    np.testing.assert_allclose(jax.grad(lambda l: T.tilt(lb, s, l).kl())(0.7), T.tilt(lb, s, 0.7).dkl_dlam(), rtol=1e-12)
