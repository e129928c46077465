"""Exact Bayes errors of the query protocols and the Chernoff exponents (theory/sharp.py)."""

import math

import numpy as np
import pytest

import murphyjax.theory as T


def test_written_out_small_cases():
    # n = 1, 'all': hit w.p. alpha and then err w.p. 1/2 - eps; no hit: coin
    a, e = 0.3, 0.2
    np.testing.assert_allclose(T.bayes_error("all", 1, a, e), a * (0.5 - e) + (1 - a) * 0.5, rtol=1e-12)
    np.testing.assert_allclose(T.bayes_error("routed_labels", 3, a, e), T.majority_error(3, 0.7), rtol=1e-12)
    np.testing.assert_allclose(T.bayes_error("all_blind", 5, a, e), T.majority_error(5, 0.5 + a * e), rtol=1e-12)
    # the exact oracle flagger (tau, phi) = (1, 0) equals routing
    np.testing.assert_allclose(T.bayes_error("flagged", 40, a, e, tau=1.0, phi=0.0), T.bayes_error("routed", 40, a, e), rtol=1e-12)
    np.testing.assert_allclose(T.chernoff_information(0.2), -0.5 * math.log(1 - 0.16), rtol=1e-14)


def test_ordering_of_protocols_and_bound():
    n, a, e = 500, 0.05, 0.1
    all_ = float(T.bayes_error("all", n, a, e))
    blind = float(T.bayes_error("all_blind", n, a, e))
    flag = float(T.bayes_error("flagged", n, a, e, tau=0.8, phi=0.1))
    lb = float(T.sign_error_lower_bound(n, a, e))
    assert lb <= all_ <= flag <= blind
    ex = T.error_exponents(a, e)
    assert float(ex["paper_bound"]) / float(ex["achievable"]) == pytest.approx(4.0, rel=0.02)


def test_large_budgets_are_cheap_and_finite():
    err = np.asarray(T.bayes_error("all", 20000, np.array([0.01, 0.1]), 0.1))
    assert np.all(np.isfinite(err)) and np.all(err > 0) and err[1] < err[0]


def test_bad_protocol():
    with pytest.raises(ValueError, match=r"protocol must be one of all, all_blind, routed, routed_labels, flagged"):
        T.bayes_error("magic", 10, 0.1, 0.1)


@pytest.mark.parametrize("protocol", ["all", "all_blind", "routed", "routed_labels", "flagged"])
def test_bayes_error_grid_equals_bayes_error_at_every_n(protocol):
    ns = (0, 1, 2, 7, 40, 129)
    grid = np.asarray(T.bayes_error_grid(protocol, ns, 0.1, 0.2, 0.7, 0.05))
    ref = [float(T.bayes_error(protocol, n, 0.1, 0.2, 0.7, 0.05)) for n in ns]
    np.testing.assert_allclose(grid, ref, rtol=1e-12, atol=1e-300)
    with pytest.raises(ValueError, match="protocol must be one of"):
        T.bayes_error_grid("nope", ns, 0.1, 0.2)
