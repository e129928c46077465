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


def _quad_conditional_mean(t, error, s, df=3.0):
    """E[V | V + X >= t] by adaptive quadrature in v, on a partition laddered around every place
    the mass can sit (v ~ 0, v ~ t / (1 + s^2), v ~ t), each piece scaled by its own maximum."""
    import warnings  # noqa: PLC0415

    from scipy import integrate, optimize, special  # noqa: PLC0415

    lsf = (lambda x: special.log_ndtr(-x / s)) if error == "normal" else (lambda x: np.log(special.stdtr(df, -x / s)))
    g = lambda v: -0.5 * v * v + lsf(t - v)
    lo, hi = min(0.0, t) - 40.0, max(0.0, t) + 40.0
    ladder = 2.0 ** np.arange(-8, 14)
    m, w = t / (1 + s * s), s / math.sqrt(1 + s * s)
    cuts = np.concatenate([[lo, hi, 0.0, t, m], ladder, -ladder, t + s * ladder, t - s * ladder, m + w * ladder, m - w * ladder])
    cuts = np.unique(np.clip(cuts, lo, hi))
    logs, nums, dens = [], [], []
    for a, b in zip(cuts[:-1], cuts[1:]):
        r = optimize.minimize_scalar(lambda v: -g(v), bounds=(a, b), method="bounded")
        M = max(g(a), g(b), -r.fun)
        kw = dict(epsabs=0.0, epsrel=2e-14, limit=200)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", integrate.IntegrationWarning)  # asks for more than double gives
            dens.append(integrate.quad(lambda v: np.exp(g(v) - M), a, b, **kw)[0])
            nums.append(integrate.quad(lambda v: v * np.exp(g(v) - M), a, b, **kw)[0])
        logs.append(M)
    sc = np.exp(np.array(logs) - max(logs))
    return float(np.dot(sc, nums) / np.dot(sc, dens))


TAIL = [24.0, 30.0, 40.0, 60.0, 100.0]


def test_conditional_true_mean_normal_far_in_the_tail():
    # the truth grows like t / 2 (E[V | P] = P / 2 for s = 1): 12.04, 15.03, 20.02, ... (a fixed
    # grid on [-12, 12] saturates near 12 and returns NaN from t = 60)
    got = np.asarray(T.conditional_true_mean(np.array(TAIL), "normal"))
    ref = np.array([_quad_conditional_mean(t, "normal", 1.0) for t in TAIL])
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    np.testing.assert_allclose(got[:3], [12.04138, 15.03319, 20.02494], atol=1e-5)
    for s in (1e-3, 0.1, 3.0):
        t = np.array([-3.0, 0.0, 2.0] + TAIL) * max(s, 1.0)
        ref = np.array([_quad_conditional_mean(x, "normal", s) for x in t])
        np.testing.assert_allclose(T.conditional_true_mean(t, "normal", s), ref, rtol=1e-12)
    # far beyond any grid: the Gaussian asymptote t / sigma^2 + 1 / t
    big = np.asarray(T.conditional_true_mean(np.array([1e3, 1e6, 1e150]), "normal"))
    np.testing.assert_allclose(big, np.array([1e3, 1e6, 1e150]) / 2 + 1 / np.array([1e3, 1e6, 1e150]), rtol=1e-9)


@pytest.mark.parametrize("df, s", [(0.5, 1.0), (1.0, 1e-3), (3.0, 1.0), (3.0, 0.1), (10.0, 10.0), (100.0, 0.1)])
def test_conditional_true_mean_student_t_far_in_the_tail(df, s):
    t = np.array([-3.0, 0.0, 2.0, 5.0] + TAIL) * max(s, 1.0)
    ref = np.array([_quad_conditional_mean(x, "student_t", s, df) for x in t])
    np.testing.assert_allclose(T.conditional_true_mean(t, "student_t", s, df=df), ref, rtol=1e-12)


def test_conditional_true_mean_heavy_asymptote_and_shapes():
    # Kwa et al. Thm 5: for a t_nu error E[V | P >= t] ~ nu / t (the error takes the excess)
    t = np.array([1e4, 1e6])
    for df in (1.0, 3.0):
        np.testing.assert_allclose(T.conditional_true_mean(t, "student_t", 1.0, df=df), df / t, rtol=1e-7)
    out = T.conditional_true_mean(np.full((2, 3), 40.0), "student_t", 1.0, df=np.array([1.0, 2.0, 3.0]))
    assert out.shape == (2, 3) and np.all(np.isfinite(out))
    assert T.conditional_true_mean(60.0, "normal").shape == ()
