"""v1 Alignment Gap, Gaussian closed form and heavy tails (theory/gap.py)."""

import math

import jax
import numpy as np
import pytest

import murphyjax.theory as T


def test_gaussian_gap_written_out():
    g = T.gaussian_gap(2.0, 1.0, 0.5)
    np.testing.assert_allclose([g["true_mean"], g["proxy_mean"], g["gap"], g["kl"], g["slope"]], [2.0, 3.0, 1.0, 3.0, 0.5])
    g = T.gaussian_gap([0.0, 1.0], 1.0, 0.5, cov_true_noise=-0.2)
    np.testing.assert_allclose(g["gap"], [0.0, 0.3])
    np.testing.assert_allclose(g["kl"], [0.0, 0.5 * 1.1])
    with pytest.raises(ValueError, match=r"cov_true_noise must satisfy cov\^2 <= var_true \* var_noise"):
        T.gaussian_gap(1.0, 1.0, 0.5, cov_true_noise=0.8)


def test_alignment_gap_against_finite_differences():
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(6), size=3))
    u = rng.normal(size=(3, 6))
    r = u + 0.5 * rng.normal(size=(3, 6))
    w = np.array([0.2, 0.5, 0.3])
    out = T.alignment_gap(lp, r, u, 1.0, w)
    h = 1e-5
    fd = (T.alignment_gap(lp, r, u, 1.0 + h, w)["gap"] - T.alignment_gap(lp, r, u, 1.0 - h, w)["gap"]) / (2 * h)
    np.testing.assert_allclose(out["slope"], fd, rtol=1e-7)
    # beta = 0: plain expectations under pi_0
    out0 = T.alignment_gap(lp, r, u, 0.0, w)
    np.testing.assert_allclose(out0["gap"], np.sum(w * np.sum(np.exp(lp) * (r - u), -1)), rtol=1e-13)
    np.testing.assert_allclose(out0["kl"], 0.0, atol=1e-15)


def test_true_utility_peak_goodhart_and_regressional():
    # the proxy keeps rewarding larger y while the true utility peaks at y = 1: Goodhart turnover
    y = np.linspace(-3, 3, 61)
    lp = -0.5 * y**2
    lp = lp - np.log(np.exp(lp).sum())
    u = -((y - 1.0) ** 2)
    r = y
    pk = T.true_utility_peak(lp, r, u)
    assert pk["found"] and 0 < pk["beta"] < 50
    # E_beta[U] at the peak beats E[U] on both sides of it
    tm = lambda b: float(T.alignment_gap(lp, r, u, b)["true_mean"])
    assert tm(pk["beta"]) > max(tm(0.5 * pk["beta"]), tm(2.0 * pk["beta"]))
    d = jax.grad(lambda b: T.alignment_gap(lp, r, u, b)["true_mean"])(pk["beta"])
    assert abs(float(d)) < 1e-9
    # independent additive noise on a Gaussian-like grid: no turnover within range
    assert not T.true_utility_peak(lp, y + 0.0, y, beta_max=5.0)["found"]


def test_exponential_gap_and_heavy_tail_errors():
    e = T.exponential_gap(0.5, 2.0, 1.0)
    np.testing.assert_allclose(e["true_mean"], 1 / 1.5)
    np.testing.assert_allclose(e["gap"], 2.0)
    np.testing.assert_allclose(e["true_limit"], 1.0)
    with pytest.raises(ValueError, match=r"lam must be < rate=1.0"):
        T.exponential_gap(1.0, 2.0, 1.0)
    with pytest.raises(ValueError, match=r"moment generating function .* is infinite"):
        T.heavy_tail_tilt(0.1, "student_t")
    np.testing.assert_allclose(T.heavy_tail_tilt(0.0), 0.0)


def test_kwa_mixture_kl_vanishes_while_proxy_gain_stays():
    t = np.array([10.0, 1e3, 1e6, 1e9])
    out = T.kwa_tail_mixture(t, 2.0, 3.0)
    kl = np.asarray(out["kl"])
    assert np.all(np.diff(kl) < 0) and kl[-1] < 1e-7
    gain = np.asarray(out["error_mean"] - out["base_error_mean"])
    np.testing.assert_allclose(gain[-1], 2.0 * 3.0 / 2.0, rtol=1e-6)
    np.testing.assert_allclose(out["true_mean_change"], 0.0)
    with pytest.raises(ValueError, match=r"t must exceed c"):
        T.kwa_tail_mixture(1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match=r"tail_index must lie in \(1.0, inf\)"):
        T.kwa_tail_mixture(10.0, 1.0, 1.0)


def test_conditional_true_mean_light_vs_heavy():
    # normal error N(0, 4): E[V | P >= t] = (1/sqrt5) phi(t/sqrt5)/Phi(-t/sqrt5)
    from scipy.stats import norm  # noqa: PLC0415 (scipy is a test-time helper only)

    t = 2.0
    x = t / math.sqrt(5)
    np.testing.assert_allclose(T.conditional_true_mean(t, "normal", 2.0), norm.pdf(x) / norm.sf(x) / math.sqrt(5), rtol=1e-8)
    heavy = np.asarray(T.conditional_true_mean(np.array([10.0, 100.0, 1000.0]), "student_t", 1.0, df=3.0))
    assert heavy[0] > heavy[1] > heavy[2] > 0 and heavy[2] < 0.005
