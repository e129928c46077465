"""Stated accuracies at the extremes, against independent mpmath computations at high precision.

Each reference is computed by mpmath from the definition (sums, logs, quadrature), not by the
formula under test. Where a reference costs more than a fraction of a second (the Student-t
conditional mean, majority votes over 1e6 and 1e8 labels) its values are written out below, with
the mpmath function that produced them.
"""

import math
from fractions import Fraction

import hypothesis.strategies as st
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
from hypothesis import example, given, settings

import murphyjax.theory as T
from murphyjax.bandits import channels, exact
from murphyjax.theory import numerics as N

FAST = settings(max_examples=100, deadline=None, derandomize=True)  # the same examples in every run


def rel_err(got, ref):
    ref = mp.mpf(ref)
    return float(abs(mp.mpf(float(got)) - ref) / abs(ref))


# --------------------------------------------------------------------------- Bernoulli KL
def kl_mp(p, q):
    """KL(Ber(p) || Ber(q)) of the given floats in 800-digit arithmetic (1 - p exact for p >= 1e-300)."""
    with mp.workdps(800):
        p, q = mp.mpf(p), mp.mpf(q)
        a = p * mp.log(p / q) if p > 0 else mp.mpf(0)
        b = (1 - p) * mp.log((1 - p) / (1 - q)) if p < 1 else mp.mpf(0)
        return a + b


_q = st.one_of(st.floats(1e-6, 1 - 1e-6), st.floats(1.0, 300.0).map(lambda e: 10.0**-e),
               st.floats(1.0, 15.5).map(lambda e: 1 - 10.0**-e))


@st.composite
def _p_near_q(draw):
    q = draw(_q)
    how = draw(st.sampled_from(["rel", "rel1m", "ulps", "any"]))
    sign = draw(st.sampled_from([-1.0, 1.0]))
    if how == "rel":
        p = q * (1 + sign * 10.0 ** -draw(st.floats(0.0, 15.5)))
    elif how == "rel1m":
        p = 1 - (1 - q) * (1 + sign * 10.0 ** -draw(st.floats(0.0, 15.5)))
    elif how == "ulps":
        p = q
        for _ in range(draw(st.integers(1, 4))):
            p = float(np.nextafter(p, sign))
    else:
        p = draw(st.floats(0.0, 1.0))
    return float(min(max(p, 0.0), 1.0)), q


@FAST
@given(_p_near_q())
def test_bernoulli_and_label_kl_match_mpmath(pq):
    p, q = pq
    ref = kl_mp(p, q)
    for f in (T.bernoulli_kl, lambda a, b: channels.label_kl(jnp.float64(a), jnp.float64(b))):
        got = float(f(p, q))
        if ref > 1e-300:
            assert rel_err(got, ref) < 1e-13, (p, q, got, ref)
        else:
            assert 0.0 <= got <= 1e-299


def test_bernoulli_kl_at_p_close_to_q():
    # p - q = 1e-9 at q = 0.3 (the log form of the KL is 46x too large there)
    for f in (T.bernoulli_kl, channels.label_kl):
        assert rel_err(f(0.3 + 1e-9, 0.3), kl_mp(0.3 + 1e-9, 0.3)) < 1e-15
        assert rel_err(f(0.0, 1e-10), kl_mp(0.0, 1e-10)) < 1e-15  # -log1p(-q), not -log(1 - q)


# --------------------------------------------------------------------------- kappa, rating KL
_eps = st.one_of(st.floats(1e-150, 0.49), st.floats(1.0, 150.0).map(lambda e: 10.0**-e),
                 st.floats(1.0, 16.0).map(lambda e: 0.5 - 10.0**-e))


@FAST
@given(_eps)
def test_kappa_and_its_bound_match_mpmath(e):
    with mp.workdps(60):
        E = mp.mpf(e)
        k, ub = 4 * E * mp.atanh(2 * E), 8 * E**2 / (1 - 4 * E**2)
    assert rel_err(T.kappa(e), k) < 1e-15
    assert rel_err(T.kappa_upper_bound(e), ub) < 1e-15  # 1 - 4 eps^2 loses 1e-9 near 1/2


def test_kappa_is_bernoulli_kl_near_zero_and_half():
    # at eps = 1e-7 the inputs 1/2 +- eps are rounded, so compare on the eps they represent
    for e in (1e-7, 1e-3, 0.25, 0.49, 0.5 - 1e-12):
        p, q = 0.5 + e, 0.5 - e
        assert rel_err(T.bernoulli_kl(p, q), kl_mp(p, q)) < 1e-15
        assert float(T.kappa((p - q) / 2)) == pytest.approx(float(kl_mp(p, q)), rel=1e-14)


@FAST
@given(st.one_of(st.floats(1.0, 150.0).map(lambda e: 10.0**-e), st.floats(0.01, 0.99),
                 st.floats(1.0, 15.0).map(lambda e: 1 - 10.0**-e)))
def test_rating_kl_matches_mpmath(c):
    # the per-hit KL int_0^1 f_+ log(f_+ / f_-) dr, f_w = 1 + w c (2r - 1), in closed form at 60 +
    # 2 |log10 c| digits (enough for its cancellation at small c)
    with mp.workdps(60 + int(2 * abs(math.log10(c)))):
        C = mp.mpf(c)
        ref = 1 - (1 - C * C) * mp.atanh(C) / C
    assert rel_err(channels.rating_kl(c), ref) < 1e-14


def test_rating_kl_against_quadrature_of_its_definition():
    for c in (1e-3, 0.3, 0.9):
        with mp.workdps(30):
            C = mp.mpf(c)
            ref = mp.quad(lambda r: (1 + C * (2 * r - 1)) * 2 * mp.atanh(C * (2 * r - 1)), [0, 0.5, 1])
        assert rel_err(channels.rating_kl(c), ref) < 1e-14


# --------------------------------------------------------------------------- tilts
def tilt_kls_mp(log_base, score, lam):
    """(KL(q || mu), KL(mu || q)) for q ∝ mu e^(lam s), mu = exp(log_base) normalised, summed atom by atom."""
    digits = 60 + 2 * max(0, int(-math.log10(abs(lam))))
    with mp.workdps(digits):
        mu = [mp.exp(mp.mpf(x)) for x in log_base]
        tot = mp.fsum(mu)
        mu = [m / tot for m in mu]
        lam, top = mp.mpf(lam), max(score)
        w = [m * mp.exp(lam * (mp.mpf(s) - top)) for m, s in zip(mu, score)]
        z = mp.fsum(w)
        q = [x / z for x in w]
        return (mp.fsum(a * mp.log(a / b) for a, b in zip(q, mu) if a > 0),
                mp.fsum(b * mp.log(b / a) for a, b in zip(q, mu)))


_lam = st.tuples(st.sampled_from([-1.0, 1.0]), st.floats(-150.0, 12.0)).map(lambda t: t[0] * 10.0 ** t[1])


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([2, 5, 12]), _lam)
def test_tilt_kl_matches_mpmath_for_lambda_from_1e_150_to_1e12(seed, K, lam):
    rng = np.random.default_rng(seed)
    lb = np.log(rng.dirichlet(np.ones(K)))
    s = rng.normal(size=K)
    t = T.tilt(lb, s, lam)
    kl, rkl = tilt_kls_mp(lb, s, lam)
    for got, ref in ((t.kl(), kl), (t.reverse_kl(), rkl)):
        if ref > 1e-300:
            assert rel_err(got, ref) < 1e-13, (lam, float(got), ref)


def test_tilt_kl_at_tiny_lambda():
    # KL ~ lam^2 Var(s) / 2 = 1e-24: logsumexp's rounding of the log-partition (1e-16) would add 1e-32, 1e-7 of it
    lb, s = np.log(np.array([0.2, 0.3, 0.5])), np.array([1.0, -0.5, 0.25])
    t = T.tilt(lb, s, 1e-12)
    kl, rkl = tilt_kls_mp(lb, s, 1e-12)
    assert rel_err(t.kl(), kl) < 1e-14 and rel_err(t.reverse_kl(), rkl) < 1e-14


@FAST
@given(st.floats(0.1, 10.0), st.one_of(st.floats(1.0, 150.0).map(lambda e: 10.0**-e), st.floats(-1e6, 0.999)))
def test_exponential_tilt_kls_match_mpmath(rate, u):
    lam = u * rate
    if lam >= rate:
        return
    out = T.exponential_score_tilt(lam, rate)
    with mp.workdps(400):
        r, L = mp.mpf(rate), mp.mpf(lam)
        a = mp.log(r / (r - L))
        kl, rkl = L / (r - L) - a, a - L / r
    for got, ref in ((out["kl"], kl), (out["reverse_kl"], rkl)):
        if ref > 1e-300:
            assert rel_err(got, ref) < 1e-14


# --------------------------------------------------------------------------- best-of-n
def bon_mp(p, n, proxy=None):
    """F_hi^n - F_lo^n per outcome (ties share their group's mass pro rata), on the exactly
    renormalised base, in 400-digit arithmetic."""
    with mp.workdps(400):
        P = [mp.mpf(x) for x in p]
        tot = mp.fsum(P)
        P = [x / tot for x in P]
        r = list(range(len(P))) if proxy is None else list(proxy)
        out = []
        for j in range(len(P)):
            lo = mp.fsum(P[i] for i in range(len(P)) if r[i] < r[j])
            g = mp.fsum(P[i] for i in range(len(P)) if r[i] == r[j])
            out.append((P[j] / g) * ((lo + g) ** n - lo**n))
        return out


@st.composite
def _bon_case(draw):
    K = draw(st.sampled_from([3, 8]))  # few shapes: each new one compiles
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    p = rng.dirichlet(np.full(K, 0.5))
    tiny = [10.0 ** -draw(st.floats(12.0, 300.0)) for _ in range(draw(st.sampled_from([0, 2])))]
    p = np.concatenate([p * (1 - sum(tiny)), tiny])  # tiny atoms at the top of the proxy order
    n = int(round(10.0 ** draw(st.floats(0.0, 12.0))))
    return p, n


@settings(max_examples=20, deadline=None)
@given(_bon_case())
def test_bon_probs_match_mpmath_for_tiny_atoms_and_huge_n(case):
    p, n = case
    got = np.asarray(T.bon_probs(p, n))
    ref = bon_mp(p, n)
    cdf = np.cumsum(p)
    for j, (g, r) in enumerate(zip(got, ref)):
        if r > 1e-300:  # the stated (4 + n |log F_j|) 8e-16, hence 6e-13 wherever pi_n > 1e-300
            assert rel_err(g, r) < min((4 + n * abs(math.log(cdf[j]))) * 8e-16, 6e-13), (j, n, p[j])
    assert rel_err(got[-1], ref[-1]) < 1e-13  # the top atom, whatever its mass


def test_bon_probs_top_atom_of_mass_1e_17_at_n_1000():
    p = np.array([0.3, 0.2, 0.5 - 2e-17, 1e-17, 1e-17])
    got, ref = np.asarray(T.bon_probs(p, 1000)), bon_mp(p, 1000)
    assert max(rel_err(g, r) for g, r in zip(got[-2:], ref[-2:])) < 1e-14  # F^n - G^n gives 0


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([3, 10]), st.integers(1, 10**6))
def test_bon_probs_with_tied_proxies_match_mpmath(seed, K, n):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(K))
    proxy = rng.integers(0, 3, K).astype(float)
    got = np.asarray(T.bon_probs(p, n, proxy))
    for g, r in zip(got, bon_mp(p, n, proxy)):
        if r > 1e-300:
            assert rel_err(g, r) < 6e-13


# --------------------------------------------------------------------------- E[V | V + X >= t]
def normal_ctm_mp(t, s):
    """E[V | V + X >= t], X ~ N(0, s^2): phi(z) / (sigma P(Z >= z)), z = t / sigma, at 50 digits."""
    with mp.workdps(50):
        t, s = mp.mpf(t), mp.mpf(s)
        sig = mp.sqrt(1 + s * s)
        z = t / sig
        return mp.npdf(z) / (sig * mp.ncdf(-z))


@FAST
@given(st.floats(-3.0, 3.0).map(lambda e: 10.0**e),
       st.one_of(st.floats(-37.0, 40.0), st.floats(0.0, 8.0).map(lambda e: 10.0**e)))
@example(s=0.031173495075675278, z=-8.59765625)  # found by a random run: 1.7e-14 at z = -8.6
def test_conditional_true_mean_normal_matches_mpmath(s, z):
    t = z * math.sqrt(1 + s * s)
    got = T.conditional_true_mean(t, "normal", s)
    zz = t / math.sqrt(1 + s * s)
    # t < 0: the relative condition number of phi(z) / Phi(-z) in z is about z^2 there, and z = t / sigma
    # carries the roundings of t (built here) and of the division: about 2 ulp of z
    tol = 1e-15 if zz >= 0 else 1e-15 + 4.5e-16 * (1 + zz * zz)
    assert rel_err(got, normal_ctm_mp(t, s)) < tol


def test_conditional_true_mean_normal_against_quadrature_and_in_erfcx_hole():
    # 12.04 / 15.03 / 20.02 at t = 24 / 30 / 40 (a fixed grid gives 11.45 / 11.85 / 11.94, NaN at 60)
    with mp.workdps(30):
        for t in (24.0, 60.0):  # the mass of v sits within a few units of t / 2: Gauss-Legendre on t / 2 +- 10
            f = lambda v, t=t: mp.npdf(v) * mp.ncdf(v - t)
            pts = [t / 2 + k / 4 for k in range(-40, 41)]
            ref = mp.quad(lambda v: v * f(v), pts, method="gauss-legendre") / mp.quad(f, pts, method="gauss-legendre")
            assert rel_err(T.conditional_true_mean(t, "normal"), ref) < 1e-15
    # jax's erfcx is 0 for arguments in [26.54, 26.64], i.e. z = t / sigma in [37.54, 37.68]
    t = np.linspace(37.5, 37.7, 21) * math.sqrt(2.0)
    got = np.asarray(T.conditional_true_mean(t, "normal", 1.0))
    assert max(rel_err(g, normal_ctm_mp(x, 1.0)) for g, x in zip(got, t)) < 1e-15


def student_t_ctm_mp(t, s, df, dps=30, n=150):
    """E[V | V + s T_df >= t] = N / D in y = log G (G ~ Gamma(df/2) the normal-mixture variable),
    N = int e^(k y - e^y) phi(t / sigma) / sigma, D = int e^(k y - e^y) P(Z >= t / sigma),
    sigma^2 = 1 + s^2 k e^-y, by Gauss-Legendre on n equal pieces of a window holding all but
    e^-100 of both, plus pieces of width 1/(4 sqrt k) around each integrand's mode (doubling n
    and the digits changes the values below by < 1e-20)."""
    with mp.workdps(dps):
        t, s, k = mp.mpf(t), mp.mpf(s), mp.mpf(df) / 2
        a = s * s * k

        def part(y, i):
            s2 = 1 + a * mp.exp(-y)
            z = t / mp.sqrt(s2)
            w = mp.exp(k * y - mp.exp(y))
            return w * mp.npdf(z) / mp.sqrt(s2) if i == 0 else w * mp.ncdf(-z)

        lo = mp.log(k) - mp.log(1 + t * t / (2 * a)) - 100 / k - 10
        hi = mp.log(k + 60 * mp.sqrt(k) + 300)
        coarse = mp.linspace(lo, hi, 400)
        width = 1 / mp.sqrt(max(k, 1))
        out = []
        for i in range(2):
            with mp.workdps(20):
                mode = max(coarse, key=lambda y: part(y, i))
            ladder = {mode + width * j / 4 for j in range(-120, 121)}
            pts = sorted(set(mp.linspace(lo, hi, n)) | {y for y in ladder if lo < y < hi})
            out.append(mp.quad(lambda y: part(y, i), pts, method="gauss-legendre"))
        return out[0] / out[1]


# (df, s, t, E[V | P >= t]) from student_t_ctm_mp: both tails, df from 0.2 to 100, s from 1e-3 to 1e3
STUDENT_T = [
    (0.2, 0.001, -100.0, 7.813344531532987756e-5),
    (0.2, 1.0, 5.0, 4.202001652442212754e-2),
    (0.2, 1000.0, 100000.0, 1.999978182400073858e-6),
    (1.0, 0.001, 100.0, 1.000200100007337274e-2),
    (1.0, 1.0, -20.0, 8.12740503117307892e-4),
    (1.0, 1000.0, 0.0, 6.366191357497188253e-4),
    (3.0, 0.001, -20.0, 2.120569354856453984e-14),
    (3.0, 1.0, 0.0, 5.071715305875450736e-1),
    (3.0, 1.0, 30.0, 1.001777130902368444e-1),
    (3.0, 1000.0, -3000.0, 2.365410388707628177e-5),
    (30.0, 0.001, -100.0, 3.268002977066243448e-130),
    (30.0, 1.0, -3.0, 3.18255701101966998e-2),
    (30.0, 1.0, 100.0, 3.000555903137497964e-1),
    (30.0, 1000.0, 30000.0, 9.687481240019554556e-4),
    (100.0, 0.001, 30.0, 3.003322905485273404e+1),
    (100.0, 0.001, 100.0, 1.010310397186297278),
    (100.0, 1.0, -20.0, 2.383749419017984535e-32),
    (100.0, 1.0, -100.0, 4.009480249293208932e-102),
    (100.0, 1000.0, -20000.0, 2.003746142344027607e-39),
    (100.0, 1000.0, 5000.0, 4.146690908056842608e-3),
]


def test_conditional_true_mean_student_t_against_mpmath_in_both_tails():
    # far in the left tail the numerator's mass sits far from the denominator's: a window on
    # the denominator alone is off by 3e-6 at (30, 1, -20), 2e-3 at (100, 1, -20), 100 % at (30, 1e-3, -100)
    df, s, t, ref = (np.array(c) for c in zip(*STUDENT_T))
    got = np.asarray(T.conditional_true_mean(t, "student_t", s, df))
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=0)


def test_student_t_table_is_what_the_mpmath_reference_gives():
    df, s, t, ref = STUDENT_T[7]
    assert float(student_t_ctm_mp(t, s, df, dps=20, n=40)) == pytest.approx(ref, rel=1e-15)


# --------------------------------------------------------------------------- majority vote
def log_binom_mp(n, k, q):
    """log Bin(k; n, q) at the working precision."""
    return mp.loggamma(n + 1) - mp.loggamma(k + 1) - mp.loggamma(n - k + 1) + k * mp.log(q) + (n - k) * mp.log(1 - q)


def majority_mp(T_, p, dps=40):
    """P(Bin(T, p) < T/2) + P(= T/2)/2: the binomial terms summed from the middle down (recurrence)."""
    with mp.workdps(dps):
        P = mp.mpf(p)
        Q = 1 - P
        if T_ == 0:
            return mp.mpf(0.5)
        m = (T_ - 1) // 2
        term = mp.exp(log_binom_mp(T_, m, P))
        total, k = mp.mpf(0), m
        while k >= 0 and term > total * mp.mpf(10) ** -(dps - 4):
            total += term
            term *= k / mp.mpf(T_ - k + 1) * Q / P
            k -= 1
        if T_ % 2 == 0:
            h = T_ // 2
            total += mp.exp(log_binom_mp(T_, h, P)) / 2
        return total


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 20000), st.one_of(st.floats(-8.0, 8.0).map(lambda z: ("z", z)),
                                         st.floats(0.0, 1.0, exclude_min=True, exclude_max=True).map(
                                             lambda p: ("p", p))))
def test_majority_error_matches_mpmath(T_, how):
    kind, v = how
    p = float(0.5 + v / (2 * math.sqrt(max(T_, 1)))) if kind == "z" else v
    p = min(max(p, 5e-324), 1.0 - 2**-53)
    ref = majority_mp(T_, p)
    got = float(T.majority_error(T_, p))
    if ref > 1e-300:
        assert rel_err(got, ref) < 2e-15 * (abs(float(mp.log(ref))) + math.sqrt(T_) / 2) + 1e-15
    else:
        assert got < 1e-299


# (T, p, majority error) from majority_mp at 40 digits
MAJORITY = [
    (1000000, 0.497, 0.99999999901373129492),
    (1000000, 0.4995, 0.84134474606857340987),
    (1000000, 0.50025, 0.30853757173212628408),
    (1000000, 0.5015, 0.0013498714406381581649),
    (1000000, 0.504, 6.2145976971337387472e-16),
    (1000001, 0.4970000014999989, 0.99999999901374951649),
    (1000001, 0.4995000002499998, 0.84134486705382139138),
    (1000001, 0.5002499998750001, 0.30853748371584059793),
    (1000001, 0.5014999992500005, 0.0013498647930180697047),
    (1000001, 0.5039999980000015, 6.2143958164656629061e-16),
    (100000000, 0.4997, 0.9999999990134155448),
    (100000000, 0.49995, 0.84134474606851630238),
    (100000000, 0.500025, 0.30853753905567665594),
    (100000000, 0.50015, 0.0013498977657206639089),
    (100000000, 0.5004, 6.2208969159991718121e-16),
    (100000001, 0.4997000000015, 0.99999999901341572707),
    (100000001, 0.49995000000025, 0.84134474727826234711),
    (100000001, 0.500024999999875, 0.30853753817559159774),
    (100000001, 0.50014999999925, 0.0013498976992390227471),
    (100000001, 0.500399999998, 6.2208948950670754645e-16),
]


@pytest.mark.parametrize("T_, p, ref", MAJORITY)
def test_majority_error_at_1e6_and_1e8_votes(T_, p, ref):
    got = float(T.majority_error(T_, p))
    assert got == pytest.approx(ref, rel=2e-15 * (abs(math.log(ref)) + math.sqrt(T_) / 2))
    assert float(exact.majority_error_k(T_, p)) == pytest.approx(ref, rel=3e-12 if T_ > 10**7 else 1e-12)


# --------------------------------------------------------------------------- exact routed majority
def binom_tails_mp(n, q, lo, hi):
    """P(K < lo) + P(K > hi), K ~ Bin(n, q), summing terms outward from each cut until negligible."""
    with mp.workdps(40):
        q = mp.mpf(q)
        out = mp.mpf(0)
        for start, step, stop in ((lo - 1, -1, -1), (hi + 1, 1, n + 1)):
            k, term = start, None
            while k != stop:
                if term is None:
                    term = mp.exp(log_binom_mp(n, k, q))
                else:  # Bin(k) / Bin(k - step)
                    term *= (n - k + 1) / mp.mpf(k) * q / (1 - q) if step > 0 else (k + 1) / mp.mpf(n - k) * (1 - q) / q
                out += term
                if term < mp.mpf(10) ** -60:
                    break
                k += step
        return out


@pytest.mark.parametrize("n, q", [(10**6, 0.5), (2 * 10**5, 1e-3), (10**4, 1 - 1e-3), (50, 0.02), (10**3, 1e-6)])
def test_routed_majority_drops_less_than_2e_23_of_the_mass(n, q):
    mean, sd = n * q, math.sqrt(n * q * (1 - q))
    lo, hi = math.floor(max(0.0, mean - 10 * sd - 20)), min(n, math.ceil(mean + 10 * sd + 20))
    assert binom_tails_mp(n, q, lo, hi) < 2e-23


def routed_majority_mp(n, alpha, eps, tau, phi):
    """sum_k Bin(k; n, q) majority_error(k, p) at 40 digits over mean +- (14 sd + 40): the majority
    errors from one seed (``majority_mp``) and e(2j + 3) = e(2j + 1) - (2p - 1) C(2j + 1, j) (p (1 - p))^(j + 1),
    e(2j + 2) = e(2j + 1); the binomial weights by their ratio recurrence."""
    with mp.workdps(40):
        a, ta, ph = mp.mpf(alpha), mp.mpf(tau), mp.mpf(phi)
        q = a * ta + (1 - a) * ph
        p = mp.mpf(float(T.diluted_vote_accuracy(alpha, eps, tau, phi)))
        mean, sd = n * float(q), math.sqrt(n * float(q) * (1 - float(q)))
        lo, hi = max(0, int(mean - 14 * sd - 40)), min(n, int(mean + 14 * sd + 40))
        k = lo if lo % 2 == 1 else max(lo - 1, 1)
        j, e_odd = (k - 1) // 2, majority_mp(k, float(p))
        c = mp.binomial(2 * j + 1, j) * (p * (1 - p)) ** (j + 1)
        err = {0: mp.mpf(0.5)}
        while k <= hi + 1:
            err[k] = err[k + 1] = e_odd
            e_odd -= (2 * p - 1) * c
            c *= (2 * j + 3) * (2 * j + 2) / mp.mpf((j + 2) * (j + 1)) * p * (1 - p)
            j, k = j + 1, k + 2
        w = mp.exp(log_binom_mp(n, lo, q))
        total = mp.mpf(0)
        for k in range(lo, hi + 1):
            total += w * err[k]
            w *= mp.mpf(n - k) / (k + 1) * q / (1 - q)
        return total


@pytest.mark.parametrize("n, alpha, eps, tau, phi", [(1000, 0.05, 0.1, 1.0, 0.0), (10**5, 0.05, 0.02, 1.0, 0.0),
                                                     (10**6, 0.05, 0.005, 0.8, 0.1)])
def test_routed_majority_error_matches_mpmath(n, alpha, eps, tau, phi):
    got = float(exact.routed_majority_error(n, alpha, eps, tau, phi))
    assert rel_err(got, routed_majority_mp(n, alpha, eps, tau, phi)) < 1e-12


# --------------------------------------------------------------------------- score flagger
def flagger_exact(u, hard, w, beta):
    """(tau, phi) of the threshold rule in exact rational arithmetic: keep every context scored above
    the threshold and the tied ones with one common probability, so that E[keep] = beta."""
    u, hard, w = list(u), [Fraction(float(x)) for x in hard], [Fraction(float(x)) for x in w]
    beta, tot = Fraction(float(beta)), sum(w)
    w = [x / tot for x in w]
    keep, above = [Fraction(0)] * len(u), Fraction(0)
    for v in sorted(set(u), reverse=True):
        idx = [i for i in range(len(u)) if u[i] == v]
        g = sum(w[i] for i in idx)
        frac = min(max((beta - above) / g, Fraction(0)), Fraction(1)) if g > 0 else Fraction(int(above < beta))
        for i in idx:
            keep[i] = frac
        above += g
    alpha = sum(a * b for a, b in zip(w, hard))
    tau = sum(a * b * c for a, b, c in zip(w, hard, keep)) / alpha
    phi = sum(a * (1 - b) * c for a, b, c in zip(w, hard, keep)) / (1 - alpha)
    return float(tau), float(phi)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([4, 30]), st.integers(1, 6), st.floats(0.01, 0.99))
def test_score_flagger_is_a_threshold_rule_whatever_the_order(seed, K, levels, beta):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, levels, K).astype(float)  # coarse scores: many ties
    hard = (rng.random(K) < 0.4).astype(float)
    hard[0], hard[-1] = 1.0, 0.0
    w = rng.dirichlet(np.ones(K))
    tau, phi = flagger_exact(u, hard, w, beta)
    perm = rng.permutation(K)
    for order in (np.arange(K), perm):
        out = T.score_flagger(u[order], hard[order], w[order], beta)
        assert float(out["tau"]) == pytest.approx(tau, rel=1e-13, abs=1e-15)
        assert float(out["phi"]) == pytest.approx(phi, rel=1e-13, abs=1e-15)
