"""Stated accuracies against exact or high-precision references: Bernoulli and rating KLs, the
majority-vote error, the score flagger's ties and the exact routed majority (bandits/exact.py)."""

from decimal import Decimal, localcontext
from fractions import Fraction

import hypothesis.strategies as st
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import murphyjax.theory as T
from murphyjax.bandits import channels, exact
from murphyjax.theory import numerics as N


def kl_exact(p, q):
    """KL(Ber(p) || Ber(q)) in 700-digit arithmetic on the given floats (enough for q down to 1e-300)."""
    with localcontext() as c:
        c.prec = 700
        p, q = Decimal(float(p)), Decimal(float(q))
        a = p * (p / q).ln() if p > 0 else Decimal(0)
        b = (1 - p) * ((1 - p) / (1 - q)).ln() if p < 1 else Decimal(0)
        return float(a + b)


# q over its whole range, p near q (a relative or an absolute few-ulp difference), near 0 or 1
_q = st.one_of(
    st.floats(1e-6, 1 - 1e-6),
    st.floats(1.0, 300.0).map(lambda e: 10.0**-e),
    st.floats(1.0, 15.5).map(lambda e: 1 - 10.0**-e),
)


@st.composite
def _pq(draw):
    q = draw(_q)
    how = draw(st.sampled_from(["rel", "rel1m", "ulps", "any", "edge"]))
    sign = draw(st.sampled_from([-1.0, 1.0]))
    if how == "rel":
        p = q * (1 + sign * 10.0 ** -draw(st.floats(0.0, 15.0)))
    elif how == "rel1m":
        p = 1 - (1 - q) * (1 + sign * 10.0 ** -draw(st.floats(0.0, 15.0)))
    elif how == "ulps":
        p = q
        for _ in range(draw(st.integers(1, 8))):
            p = np.nextafter(p, sign)
    elif how == "any":
        p = draw(st.floats(0.0, 1.0))
    else:
        p = draw(st.sampled_from([0.0, 1.0, 5e-324, 1e-300, 1 - 2**-53]))
    return float(min(max(p, 0.0), 1.0)), q


@settings(max_examples=300, deadline=None)
@given(_pq())
def test_bernoulli_kl_is_accurate_to_1e13_everywhere(pq):
    p, q = pq
    ref = kl_exact(p, q)
    got = float(T.bernoulli_kl(p, q))
    assert got >= 0.0
    if ref > 1e-290:  # below, the value itself is subnormal
        assert got == pytest.approx(ref, rel=1e-13, abs=0)
    if p == q:
        assert got == 0.0


def test_bernoulli_and_label_kl_at_the_stated_points():
    # p - q = 1e-9 at q = 0.3: KL = d^2 / (2 q (1 - q)) (1 + O(d)); the log form was 46x too large
    d = 1e-9
    for f in (T.bernoulli_kl, channels.label_kl):
        assert float(f(0.3 + d, 0.3)) == pytest.approx(kl_exact(0.3 + d, 0.3), rel=1e-13)
        assert float(f(0.3 + d, 0.3)) == pytest.approx(((0.3 + d) - 0.3) ** 2 / (2 * 0.3 * 0.7), rel=1e-8)
        assert float(f(0.0, 1e-10)) == pytest.approx(1.00000000005e-10, rel=1e-15)  # -log1p(-q)
        assert float(f(1.0, 1 - 2**-52)) == pytest.approx(2**-52, rel=1e-13)
    p = np.array([0.5 + 1e-15, 1e-300, 0.9999999, 0.2])
    q = np.array([0.5, 2e-300, 0.99999995, 0.24])
    ref = [kl_exact(a, b) for a, b in zip(p, q)]
    np.testing.assert_allclose(channels.label_kl(jnp.asarray(p), jnp.asarray(q)), ref, rtol=1e-13)
    # float32 in, float32 out, still cancellation-free
    out = channels.label_kl(jnp.float32(0.5) + jnp.float32(2**-20), jnp.float32(0.5))
    assert out.dtype == jnp.float32 and float(out) == pytest.approx(2.0 * 2.0**-40, rel=1e-5)


def test_rating_kl_small_c_and_whole_range():
    def exact_rating(c):
        with localcontext() as ctx:
            ctx.prec = 700
            c = Decimal(float(c))
            return float(1 - (1 - c * c) * ((1 + c) / (1 - c)).ln() / 2 / c)

    c = np.concatenate([np.geomspace(1e-150, 0.999999, 300), [0.4999999, 0.5, 0.5000001, 1 - 1e-12]])
    np.testing.assert_allclose(channels.rating_kl(c), [exact_rating(x) for x in c], rtol=1e-14)
    # the closed form 1 - (1 - c^2) atanh(c)/c is 1e-8 off at c = 1e-4 and 0.67 off at 1e-8
    for x in (1e-4, 1e-6, 1e-8):
        assert float(channels.rating_kl(x)) == pytest.approx(2 * x**2 / 3 + 2 * x**4 / 15, rel=1e-15)


def majority_exact(T_, p):
    """P(Bin(T, p) < T/2) + P(= T/2)/2 as an exact rational: sum_k C(T, k) a^k b^(T-k) / d^T."""
    P = Fraction(float(p))
    a, d = P.numerator, P.denominator
    pa, pb = [1], [1]
    for _ in range(T_):
        pa.append(pa[-1] * a)
        pb.append(pb[-1] * (d - a))
    s, c = 0, 1
    for k in range((T_ + 1) // 2 + 1):
        w = c * pa[k] * pb[T_ - k]
        s += 2 * w if 2 * k < T_ else (w if 2 * k == T_ else 0)
        c = c * (T_ - k) // (k + 1)
    return float(Fraction(s, 2 * d**T_))


def test_majority_error_against_exact_sums():
    for T_ in [0, 1, 2, 3, 16, 51, 400, 2000]:
        ps = [0.0, 1e-9, 0.3, 0.5, 0.5 + 1e-6, 0.7, 0.95, 1 - 1e-9, 1.0]
        got = np.asarray(T.majority_error(T_, np.array(ps)))
        ref = np.array([majority_exact(T_, p) for p in ps])
        big = ref > 1e-30
        np.testing.assert_allclose(got[big], ref[big], rtol=2e-13)
        np.testing.assert_allclose(got[~big], ref[~big], atol=1e-30)


def test_majority_error_at_large_T():
    from scipy import stats  # noqa: PLC0415
    from scipy.special import betainc  # noqa: PLC0415

    def boost(T_, p):
        m = (T_ - 1) // 2
        tie = stats.binom.pmf(T_ // 2, T_, p) if T_ % 2 == 0 else 0.0
        return betainc(T_ - m, m + 1, 1 - p) + 0.5 * tie

    # symmetric votes: exactly 1/2 at any T (jax's betainc gives 0.5 + 1.5e-9 at T = 1e6)
    np.testing.assert_allclose(T.majority_error(np.array([10**6, 10**6 + 1, 10**8]), 0.5), 0.5, rtol=1e-12)
    for T_, tol in [(10**4, 2e-13), (10**6, 1e-12), (10**8, 2e-11)]:
        z = np.linspace(-8, 8, 9)
        Ts, ps = T_ + np.arange(9) % 2, 0.5 + z / (2 * np.sqrt(T_))
        ref = np.array([boost(int(a), b) for a, b in zip(Ts, ps)])
        np.testing.assert_allclose(T.majority_error(Ts, ps), ref, rtol=tol)


def test_binomial_pmf_against_high_precision():
    pi = Decimal("3.14159265358979323846264338327950288419716939937510")

    def log_fact(n):  # Stirling's series: exact to ~1e-40 for n >= 1e3
        n = Decimal(int(n))
        return (n + Decimal("0.5")) * n.ln() - n + (2 * pi).ln() / 2 + 1 / (12 * n) - 1 / (360 * n**3) + 1 / (1260 * n**5)

    for n, q in [(1e4, 0.3), (1e6, 0.05), (1e8, 0.05), (1e9, 0.5), (1e9, 0.3)]:
        k = np.round(n * q + np.linspace(-5, 5, 7) * np.sqrt(n * q * (1 - q)))
        with localcontext() as c:
            c.prec = 40
            qd = Decimal(float(q))
            ref = [float((log_fact(n) - log_fact(a) - log_fact(n - a) + int(a) * qd.ln() + int(n - a) * (1 - qd).ln()).exp())
                   for a in k]
        np.testing.assert_allclose(N.binom_pmf(jnp.asarray(k), n, q), ref, rtol=1e-14)
        np.testing.assert_allclose(N.binom_pmf(k, n, q, xp=np), ref, rtol=1e-14)


def test_score_flagger_ties_do_not_depend_on_order():
    # two contexts tied at the threshold, one hard: each is kept with probability 1/2 whatever
    # the order (array order made tau 1 or 0)
    u, hard, w = np.array([1.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]), np.array([0.25, 0.25, 0.5])
    for perm in ([0, 1, 2], [1, 0, 2], [2, 1, 0]):
        out = T.score_flagger(u[perm], hard[perm], w[perm], 0.25)
        np.testing.assert_allclose(out["keep"], np.array([0.5, 0.5, 0.0])[perm], atol=1e-15)
        assert float(out["tau"]) == pytest.approx(0.5) and float(out["phi"]) == pytest.approx(1 / 6)
    # random scores on a coarse grid (many ties): keep rate exact, tied contexts share a keep
    # probability, everything strictly above is kept, and a permutation changes nothing
    rng = np.random.default_rng(0)
    u, hard, w = rng.integers(0, 5, 40).astype(float), rng.random(40), rng.dirichlet(np.ones(40))
    out = T.score_flagger(u, hard, w, 0.37)
    keep = np.asarray(out["keep"])
    assert float(np.sum(w * keep)) == pytest.approx(0.37, abs=1e-15)
    for v in np.unique(u):
        assert np.ptp(keep[u == v]) == 0.0
    thr = u[(keep > 0) & (keep < 1)]
    assert thr.size == 0 or np.all(keep[u > thr[0]] == 1.0) and np.all(keep[u < thr[0]] == 0.0)
    perm = rng.permutation(40)
    again = T.score_flagger(u[perm], hard[perm], w[perm], 0.37)
    np.testing.assert_allclose(np.asarray(again["keep"]), keep[perm], atol=1e-15)
    for name in ("tau", "phi"):
        assert float(again[name]) == pytest.approx(float(out[name]), rel=1e-14)


def test_exact_routed_majority_truncation_and_weights():
    from scipy import stats  # noqa: PLC0415

    # the window mean +- (10 sd + 20) drops < 2e-23 of Bin(n, q), also for Poisson-like tails
    for n, q in [(1.2e7, 1 - 2.7e-8), (1e3, 1e-3), (1e9, 0.5), (50, 0.02)]:
        mean, sd = n * q, np.sqrt(n * q * (1 - q))
        lo, hi = np.floor(max(0.0, mean - 10 * sd - 20)), min(n, np.ceil(mean + 10 * sd + 20))
        assert stats.binom.cdf(lo - 1, n, q) + stats.binom.sf(hi, n, q) < 2e-23
    # relative accuracy where the error is not astronomically small, against a wider window
    for n, alpha, eps in [(1000, 0.05, 0.1), (10**5, 0.05, 0.1), (10**6, 0.05, 0.02), (300, 0.1, 0.45)]:
        q, p = alpha, 0.5 + eps
        k = np.arange(0, min(n, int(n * q + 14 * np.sqrt(n * q) + 40)) + 1)
        ref = float(np.sum(N.binom_pmf(k, n, q, xp=np) * np.asarray(T.majority_error(k, p))))
        assert float(exact.routed_majority_error(n, alpha, eps)) == pytest.approx(ref, rel=1e-12)
    # the window recurrence stays relative where the error falls by 40 orders across it
    k = np.arange(4000, 6000)
    np.testing.assert_allclose(exact.majority_error_window(4000, 2000, 0.6), T.majority_error(k, 0.6), rtol=1e-12)
