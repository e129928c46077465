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
