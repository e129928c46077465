"""Murphy's Gap closed forms (theory/murphy.py): written-out values, identities, bad inputs."""

import itertools
import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import murphyjax.theory as T


def test_kappa_written_out_values():
    # paper.md section 8: kappa(0.05) = 0.020067, kappa(0.1) = 0.081093
    np.testing.assert_allclose(T.kappa(0.05), 0.020067069546215118, rtol=1e-14)
    np.testing.assert_allclose(T.kappa(0.1), 0.08109302162163289, rtol=1e-14)
    np.testing.assert_allclose(T.kappa_upper_bound(0.1), 1 / 12, rtol=1e-14)
    # KL(Ber(0.6) || Ber(0.4)) = 0.2 log 1.5
    np.testing.assert_allclose(T.bernoulli_kl(0.6, 0.4), 0.2 * math.log(1.5), rtol=1e-14)


def test_budget_table_of_the_paper():
    # paper.md section 8: budget at which n alpha kappa(eps) = 1
    table = {(0.01, 0.05): 4983.3, (0.01, 0.1): 1233.2, (0.05, 0.05): 996.7,
             (0.05, 0.1): 246.6, (0.1, 0.05): 498.3, (0.1, 0.1): 123.3}
    for (a, e), n in table.items():
        np.testing.assert_allclose(T.budget_for_unit_exponent(a, e), n, atol=0.05)
    # (2 alpha eps^2)^-1
    np.testing.assert_allclose(T.oracle_queries(0.01, 0.05, math.e, 1.0), 20000.0, rtol=1e-12)
    np.testing.assert_allclose(T.oracle_queries(0.1, 0.1, math.e, 1.0), 500.0, rtol=1e-12)


def test_lower_bound_value_and_vectorisation():
    lb = T.murphy_lower_bound(1000, 0.05, 0.1, 0.05)
    np.testing.assert_allclose(lb, 0.0125 * math.exp(-50 * 0.08109302162163289), rtol=1e-13)
    n = jnp.linspace(0.0, 1e4, 10**6)
    out = T.murphy_lower_bound(n, 0.05, 0.1, 0.05)
    assert out.shape == (10**6,) and out.dtype == jnp.float64
    assert bool(jnp.all(jnp.diff(out) <= 0))
    np.testing.assert_allclose(out[0], 0.0125, rtol=1e-15)


@settings(max_examples=60, deadline=None)
@given(st.floats(1e-4, 0.4999))
def test_kappa_is_bernoulli_kl_and_below_bound(e):
    k = float(T.kappa(e))
    np.testing.assert_allclose(k, float(T.bernoulli_kl(0.5 + e, 0.5 - e)), rtol=1e-10)
    assert k <= float(T.kappa_upper_bound(e)) * (1 + 1e-12)
    assert k >= 8 * e**2  # atanh(z) >= z


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 300), st.floats(0.01, 0.45))
def test_majority_error_below_hoeffding(t, e):
    assert float(T.majority_error(t, 0.5 + e)) <= float(T.majority_error_bound(t, e)) + 1e-15


def test_majority_error_exact_small_case():
    # T = 3, p = 0.6: error = P(S <= 1) = 0.4^3 + 3 * 0.6 * 0.4^2 = 0.352
    np.testing.assert_allclose(T.majority_error(3, 0.6), 0.352, rtol=1e-13)
    # T = 2, p = 0.6: P(S=0) + P(S=1)/2 = 0.16 + 0.24 = 0.4
    np.testing.assert_allclose(T.majority_error(2, 0.6), 0.4, rtol=1e-13)
    np.testing.assert_allclose(T.majority_error(0, 0.9), 0.5)


def test_flagger_dilution_and_theorem3():
    np.testing.assert_allclose(T.flagger_hit_fraction(0.1, 1.0, 0.0), 1.0)
    p = T.flagger_hit_fraction(0.1, 0.8, 0.2)
    np.testing.assert_allclose(p, 0.08 / (0.08 + 0.18), rtol=1e-14)
    np.testing.assert_allclose(T.diluted_vote_accuracy(0.1, 0.2, 0.8, 0.2), 0.5 + 0.2 * p, rtol=1e-14)
    # the exact oracle: dilution formula == Theorem 2
    np.testing.assert_allclose(T.diluted_flagger_queries(0.05, 0.1, 0.5, 0.01, 1.0, 0.0),
                               T.oracle_queries(0.05, 0.1, 0.5, 0.01), rtol=1e-13)
    # with false positives, Theorem 3 under-counts by 1/p (labels) times the keep-rate ratio
    assert T.diluted_flagger_queries(0.1, 0.2, 1.0, 0.01, 0.8, 0.2) > T.oracle_queries(0.1, 0.2, 1.0, 0.01, 0.8)


def test_heterogeneous_and_mixture():
    e = np.array([0.1, 0.2, 0.3])
    w = np.array([0.2, 0.3, 0.5])
    K = float(T.heterogeneous_kappa(e, w))
    np.testing.assert_allclose(K, float(np.sum(w * np.asarray(T.kappa(e)))), rtol=1e-14)
    np.testing.assert_allclose(T.mixture_exponent(0.1 * w, e), 0.1 * K, rtol=1e-14)
    np.testing.assert_allclose(T.heterogeneous_lower_bound(100, 0.1, e, 0.05, w),
                               T.mixture_lower_bound(100, 0.1 * w, e, 0.05), rtol=1e-14)
    # constant eps reduces to Theorem 1
    np.testing.assert_allclose(T.heterogeneous_lower_bound(100, 0.1, [0.2, 0.2], 0.05),
                               T.murphy_lower_bound(100, 0.1, 0.2, 0.05), rtol=1e-14)


def test_b8_paper_kl_is_a_quarter_of_the_true_kl():
    m, s2 = T.gaussian_rating_llr(0.1, 1.0)
    np.testing.assert_allclose(m, 0.02)
    np.testing.assert_allclose(s2, 0.04)
    np.testing.assert_allclose(T.rating_kl_per_hit_paper(m, s2), float(m) / 4, rtol=1e-14)
    # the discrepancy: with T m = 10 the "lower bound" of B.8 as written exceeds the exact error
    t = 500
    exact = float(T.gaussian_rating_bayes_error(t, 0.1, 1.0))
    assert float(T.bretagnolle_huber(t * T.rating_kl_per_hit_paper(m, s2))) > exact
    assert float(T.bretagnolle_huber(t * T.rating_kl_per_hit(m))) < exact


def test_sprt_exact_against_simulation_and_wald():
    rng = np.random.default_rng(0)
    eps, delta = 0.1, 0.01
    ex = T.sprt_exact(eps, delta)
    assert float(ex["steps"]) == 12.0
    np.testing.assert_allclose(ex["error"], (2 / 3) ** 12 / (1 + (2 / 3) ** 12), rtol=1e-12)
    reps = 40000
    s = np.zeros(reps, int)
    t = np.zeros(reps, int)
    done = np.zeros(reps, bool)
    while not done.all():
        step = np.where(rng.random(reps) < 0.5 + eps, 1, -1)
        s = np.where(done, s, s + step)
        t = np.where(done, t, t + 1)
        done |= np.abs(s) >= 12
    se = t.std() / np.sqrt(reps)
    assert abs(t.mean() - float(ex["expected_hits"])) < 4 * se
    err_se = math.sqrt(float(ex["error"]) / reps)
    assert abs((s < 0).mean() - float(ex["error"])) < 4 * err_se
    # B.5 as written (no overshoot) is violated here; the corrected bound holds
    assert float(ex["expected_hits"]) > float(T.sprt_expected_hits_paper(eps, delta))


def test_score_flagger_threshold():
    u = np.array([0.9, 0.1, 0.5, 0.7])
    hard = np.array([1.0, 0.0, 0.0, 1.0])
    w = np.array([0.1, 0.5, 0.2, 0.2])
    out = T.score_flagger(u, hard, w, keep_rate=0.4)
    # keeps x0 (0.1), x3 (0.2), and half of x2 (0.1)
    np.testing.assert_allclose(out["keep"], [1.0, 0.0, 0.5, 1.0], atol=1e-15)
    np.testing.assert_allclose(out["tau"], 1.0)
    np.testing.assert_allclose(out["phi"], 0.1 / 0.7, rtol=1e-13)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: T.kappa(0.5), r"eps must lie in \(0.0, 0.5\); got 0.5"),
        (lambda: T.kappa(0.0), r"eps must lie in \(0.0, 0.5\)"),
        (lambda: T.kappa(float("nan")), r"eps must not contain NaN"),
        (lambda: T.kappa([0.1, -0.2]), r"eps must lie in .* got -0.2"),
        (lambda: T.murphy_lower_bound(10, 1.0, 0.1, 0.1), r"alpha must lie in \(0.0, 1.0\); got 1.0"),
        (lambda: T.murphy_lower_bound(-1, 0.1, 0.1, 0.1), r"n must lie in \[0.0, inf\)"),
        (lambda: T.murphy_lower_bound(10, 0.1, 0.1, 0.0), r"gamma must lie in \(0.0, inf\)"),
        (lambda: T.oracle_queries(0.1, 0.1, 0.1, 0.2), r"eta must lie in \(0, gamma\)"),
        (lambda: T.oracle_queries(0.1, 0.1, 0.1, 0.01, tpr=0.0), r"tpr must lie in \(0.0, 1.0\]"),
        (lambda: T.bernoulli_kl(0.5, 1.0), r"q must lie in \(0.0, 1.0\)"),
        (lambda: T.bernoulli_kl([0.5, 0.4], [0.5, 0.4, 0.3]), r"shapes must broadcast"),
        (lambda: T.heterogeneous_kappa([0.1, 0.2], [0.5, 0.6]), r"weights must sum to 1"),
        (lambda: T.heterogeneous_kappa([0.1, 0.2], [0.5, 0.25, 0.25]), r"shapes must match"),
        (lambda: T.mixture_exponent([0.6, 0.5], [0.1, 0.1]), r"alphas must sum to less than 1"),
        (lambda: T.majority_error(2.5, 0.6), r"T must be an integer >= 0"),
        (lambda: T.sprt_exact(0.1, 0.5), r"delta must lie in \(0.0, 0.5\)"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_functions_work_under_jit_and_vmap():
    f = jax.jit(lambda n, a, e, g: T.murphy_lower_bound(n, a, e, g))
    np.testing.assert_allclose(f(1000.0, 0.05, 0.1, 0.05), T.murphy_lower_bound(1000, 0.05, 0.1, 0.05), rtol=1e-15)
    g = jax.vmap(T.kappa)(jnp.array([0.05, 0.1]))
    np.testing.assert_allclose(g, [0.020067069546215118, 0.08109302162163289], rtol=1e-14)
    # gradient of the bound in eps is the analytic one
    d = jax.grad(lambda e: T.murphy_lower_bound(100.0, 0.1, e, 1.0))(0.1)
    e = 0.1
    dk = 4 * math.atanh(2 * e) + 8 * e / (1 - 4 * e**2)
    np.testing.assert_allclose(d, -10 * dk * float(T.murphy_lower_bound(100.0, 0.1, e, 1.0)), rtol=1e-12)


def test_majority_error_matches_the_direct_binomial_sum():
    from scipy.stats import binom

    for T in [1, 2, 7, 50, 51, 400]:
        for p in [0.5, 0.55, 0.7, 0.95]:
            S = binom(T, p)
            k = np.arange(T + 1)
            direct = float(np.sum(np.where(2 * k < T, S.pmf(k), np.where(2 * k == T, 0.5 * S.pmf(k), 0.0))))
            np.testing.assert_allclose(float(T_maj(T, p)), direct, rtol=1e-11)


def T_maj(T_, p):
    return T.majority_error(T_, p)
