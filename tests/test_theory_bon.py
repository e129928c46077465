"""Best-of-n and the Gao et al. forms (theory/bon.py)."""

import math

import numpy as np
import pytest

import murphyjax.theory as T


def test_bon_written_out():
    np.testing.assert_allclose(T.bon_kl_bound(1), 0.0)
    np.testing.assert_allclose(T.bon_kl_bound(2), math.log(2) - 0.5)
    p = np.array([0.5, 0.5])
    # n = 2 on two ordered atoms: (1/4, 3/4)
    np.testing.assert_allclose(T.bon_probs(p, 2), [0.25, 0.75])
    np.testing.assert_allclose(T.bon_kl(p, 2), 0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    np.testing.assert_allclose(T.bon_probs(p, 1), p)
    # win rate, ties count 1/2: n = 2 -> 1/4 * 1/4 + 3/4 * 3/4 = 0.625 <= 2/3
    np.testing.assert_allclose(T.bon_win_rate_exact(p, 2), 0.625)
    np.testing.assert_allclose(T.bon_win_rate(2), 2 / 3)


def test_bon_ties_and_order():
    p = np.array([0.2, 0.3, 0.1, 0.4])
    proxy = np.array([2.0, 1.0, 2.0, 0.0])
    q = np.asarray(T.bon_probs(p, 3, proxy=proxy))
    # tie group {0, 2} at the top: 1 - (0.7)^3, split 2:1
    top = 1 - 0.7**3
    np.testing.assert_allclose(q[[0, 2]], [top * 2 / 3, top / 3])
    np.testing.assert_allclose(q.sum(), 1.0)
    # sorted, distinct proxies: the proxy argument agrees with the ordered form
    order = np.argsort([3.0, 1.0, 2.0, 0.0])
    pp = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(T.bon_probs(pp, 5, proxy=[3.0, 1.0, 2.0, 0.0])[order], T.bon_probs(pp[order], 5))


def test_expected_max_normal_and_frontier():
    np.testing.assert_allclose(T.expected_max_normal(2), 1 / math.sqrt(math.pi), rtol=1e-10)
    np.testing.assert_allclose(T.expected_max_normal(1000), 3.2414358, atol=5e-8)
    np.testing.assert_allclose(T.expected_max_normal(16), 1.7659914, atol=5e-8)
    # related-theory 2.2: at n = 16, tilting beats best-of-n at the same KL
    assert float(T.tilt_frontier_normal(T.bon_kl_bound(16))) == pytest.approx(1.9158, abs=1e-4)


def test_unbiased_estimator_edges():
    s = np.array([0.1, 0.5, 0.7, 2.0])
    np.testing.assert_allclose(T.bon_unbiased_estimate(s, 1), s.mean())
    np.testing.assert_allclose(T.bon_unbiased_estimate(s, 4), 2.0)
    with pytest.raises(ValueError, match=r"n must be <= the number of samples N=4"):
        T.bon_unbiased_estimate(s, 5)


def test_gao_fit_and_peaks():
    d = np.linspace(0.1, 5, 30)
    f = T.fit_gao(d, T.gao_bon(d, 0.5, 0.12), "bon")
    assert f["a"] == pytest.approx(0.5, abs=1e-12) and f["b"] == pytest.approx(0.12, abs=1e-12)
    # related-theory 1.4: 3M row gives d* = 2.04, R* ~ 0.500 (0.490, 0.120)
    pk = T.gao_peak(0.490, 0.120, "bon")
    assert float(pk["d"]) == pytest.approx(2.0417, abs=1e-4) and float(pk["value"]) == pytest.approx(0.5002, abs=1e-4)
    r = T.fit_gao(d, T.gao_rl(d, 0.35, 0.15), "rl")
    assert r["r2"] == pytest.approx(1.0)
    np.testing.assert_allclose(r["peak"]["d"], math.exp(0.35 / 0.15 - 1), rtol=1e-10)
    with pytest.raises(ValueError, match=r"form must be 'bon' or 'rl'"):
        T.fit_gao(d, d, "ppo")


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"base_probs must sum to 1"):
        T.bon_probs([0.5, 0.6], 2)
    with pytest.raises(ValueError, match=r"n must be an integer >= 1"):
        T.bon_probs([0.5, 0.5], 0)
    with pytest.raises(ValueError, match=r"n must lie in \[1.0, inf\)"):
        T.bon_kl_bound(0.5)


def _bon_exact(p, n, proxy=None):
    """pi_n in exact rational arithmetic on the given float masses (renormalised exactly)."""
    from fractions import Fraction  # noqa: PLC0415

    P = [Fraction(float(x)) for x in p]
    total = sum(P)
    P = [x / total for x in P]
    r = np.arange(len(P)) if proxy is None else np.asarray(proxy)
    out = []
    for j in range(len(P)):
        hi = sum(P[i] for i in range(len(P)) if r[i] <= r[j])
        lo = sum(P[i] for i in range(len(P)) if r[i] < r[j])
        out.append(float(P[j] / (hi - lo) * (hi**n - lo**n)) if hi > lo else 0.0)
    return np.array(out)


@pytest.mark.parametrize("tiny", [1e-12, 1e-17, 1e-40])
def test_bon_tiny_top_atoms_keep_their_digits(tiny):
    # F_K^n - F_{K-1}^n for a top atom of mass 1e-17 is ~ n 1e-17; as a difference of powers it is 0
    p = np.array([0.5, 0.3, 0.2 - tiny, tiny])
    for n in (1, 7, 1000):
        got = np.asarray(T.bon_probs(p, n))
        np.testing.assert_allclose(got, _bon_exact(p, n), rtol=3e-13, atol=0)
    np.testing.assert_allclose(T.bon_probs(p, 10**4)[-1], 10**4 * tiny, rtol=1e-8)  # n tiny (1 + O(n tiny))


def test_bon_probs_against_exact_arithmetic():
    rng = np.random.default_rng(3)
    for K, n in [(6, 2), (12, 50), (30, 1000)]:
        p = rng.dirichlet(np.full(K, 0.3))
        p[rng.integers(K)] = 1e-15
        p[-1] = 1e-13
        p /= p.sum()
        ref = _bon_exact(p, n)
        keep = ref > 1e-300
        np.testing.assert_allclose(np.asarray(T.bon_probs(p, n))[keep], ref[keep], rtol=3e-13)
        proxy = rng.integers(0, K // 2, K).astype(float)  # ties
        ref = _bon_exact(p, n, proxy)
        keep = ref > 1e-300
        np.testing.assert_allclose(np.asarray(T.bon_probs(p, n, proxy=proxy))[keep], ref[keep], rtol=3e-13)
        np.testing.assert_allclose(float(np.sum(T.bon_probs(p, n))), 1.0, atol=1e-14)


def test_bon_probs_normalisation_tolerance():
    # within the stated 1e-9 tolerance the base is renormalised; beyond it, a ValueError names it
    p = np.array([0.25, 0.25, 0.5]) * (1 + 5e-10)
    np.testing.assert_allclose(T.bon_probs(p, 3), T.bon_probs(np.array([0.25, 0.25, 0.5]), 3), rtol=1e-14)
    with pytest.raises(ValueError, match=r"base_probs must sum to 1 along its last axis \(tolerance 1e-09\)"):
        T.bon_probs(np.array([0.25, 0.25, 0.5]) * (1 + 2e-9), 3)
