"""Cancellation-free building blocks shared by the theory functions and the library (dtype-following,
jit-safe, no input validation: the public functions validate first).

``bregman(x, m, d)`` = x log(x/m) - x + m >= 0, the per-atom term of a KL divergence between
two laws of equal total mass (Loader's ``bd0``). Near x = m it is summed as the series

    x log(x/m) - x + m = d v + 2 x sum_{j>=1} v^(2j+1) / (2j + 1),   d = x - m, v = d / (x + m),

whose terms are all O(d^2) (no O(d) terms cancel); elsewhere x log(x/m) - d loses at most a
decimal digit. Relative error below 1e-14 for x >= 0 and m > 0 (measured against 700-digit
arithmetic), provided d is passed exactly (e.g. computed as p - q from the inputs).

``binom_log_pmf`` is Loader's saddle-point form of the binomial log-pmf built on it. The
functions taking ``xp`` run on NumPy (``xp=np``, for eager code whose shapes change) or JAX.
``erfcx`` is the scaled complementary error function without the hole of jax's.
"""

from __future__ import annotations

import decimal

import jax
import jax.numpy as jnp
import numpy as np

_SMALL = 0.1  # |v| below this: series (8 terms reach v^17 < 1e-17 of the leading term)


def _series(x, d, v):
    w = v * v
    poly = 0.0
    for j in range(7, -1, -1):
        poly = poly * w + 1.0 / (2 * j + 3)
    return d * v + 2.0 * x * v * w * poly


def bregman(x, m, d, xp=jnp):
    """x log(x/m) - x + m >= 0 (x >= 0, m > 0), with d = x - m supplied exactly by the caller."""
    s = x + m
    v = d / xp.where(s > 0, s, 1.0)
    small = xp.abs(v) < _SMALL
    pos = x > 0
    direct = xp.where(pos, x * xp.log(xp.where(pos, x, 1.0) / xp.where(m > 0, m, 1.0)), 0.0) - d
    return xp.where(small, _series(x, d, xp.where(small, v, 0.0)), direct)


def bregman_log(log_x, log_m, ell):
    """bregman(x, m) from logs: x = exp(log_x), m = exp(log_m), ell = log(x / m) supplied accurately.

    Either log may be -inf when both are (the term is then 0). Written for the tilt KL: only ell
    enters the cancellation-prone part, so a common rounding error in ell (the log-partition)
    moves a KL by a relative, not absolute, amount.
    """
    m = jnp.exp(log_m)
    x = jnp.exp(log_x)
    v = jnp.tanh(0.5 * ell)
    small = jnp.abs(v) < _SMALL
    d = jnp.where(small, m * jnp.expm1(jnp.where(small, ell, 0.0)), x - m)
    return jnp.where(small, _series(x, d, jnp.where(small, v, 0.0)), x * ell - d)


def erfcx(x):
    """exp(x^2) erfc(x), relative error below 2e-15 (jax's erfcx returns 0 for x in [26.54, 26.64]).

    For x >= 20 the asymptotic series (1 / (x sqrt(pi))) sum_j (-1)^j (2j - 1)!! / (2 x^2)^j,
    cut after ten terms (the first omitted one is below 2e-19 there); below 20, jax's erfcx.
    """
    big = x >= 20.0
    xb = jnp.where(big, x, 20.0)
    w = 0.5 / (xb * xb)
    series = 0.0
    for j in range(10, 0, -1):
        series = 1.0 - (2 * j - 1) * w * series
    return jnp.where(big, series / (xb * np.sqrt(np.pi)), jax.scipy.special.erfcx(jnp.where(big, 0.0, x)))


def log1p(x):
    """log(1 + x) to a few ulps: Kahan's log(u) x / (u - 1), u = 1 + x (XLA's log1p is off by
    up to 3e-14 for x near -0.41)."""
    u = 1.0 + x
    d = u - 1.0
    return jnp.where(d == 0, x, jnp.log(u) * x / jnp.where(d == 0, 1.0, d))


def two_prod(a, b):
    """(hi, lo) with hi + lo = a b exactly (Dekker's splitting; plain arithmetic, any backend)."""
    hi = a * b
    split = lambda z: (lambda c: (c - (c - z), z - (c - (c - z))))(134217729.0 * z)
    ah, al = split(a)
    bh, bl = split(b)
    return hi, ((ah * bh - hi) + ah * bl + al * bh) + al * bl


def _stirling_table(n_max: int = 15):
    """stirlerr(n) = log n! - log(sqrt(2 pi n) (n/e)^n) for n = 0..15 (0 unused), 40-digit arithmetic."""
    with decimal.localcontext() as c:
        c.prec = 40
        pi = decimal.Decimal("3.14159265358979323846264338327950288419716939937510")
        half_log_2pi = (2 * pi).ln() / 2
        out, log_fact = [0.0], decimal.Decimal(0)
        for n in range(1, n_max + 1):
            d = decimal.Decimal(n)
            log_fact += d.ln()
            out.append(float(log_fact - (d + decimal.Decimal("0.5")) * d.ln() + d - half_log_2pi))
    return np.asarray(out)


_STIRLERR = _stirling_table()


def stirlerr(n, xp=jnp):
    """log n! - log(sqrt(2 pi n) (n/e)^n) for integers n >= 1 (Loader 2000): table, then series."""
    big = n > 15
    nn = xp.where(big, n, 16.0)
    w = 1.0 / (nn * nn)
    series = (1 / 12 - (1 / 360 - (1 / 1260 - (1 / 1680 - w / 1188) * w) * w) * w) / nn
    return xp.where(big, series, xp.asarray(_STIRLERR)[xp.clip(n, 0, 15).astype(np.int32)])


def binom_log_pmf(k, n, p, xp=jnp):
    """log Bin(n, p) pmf at integers k in [0, n], p in (0, 1) (Loader's saddle-point form).

    stirlerr(n) - stirlerr(k) - stirlerr(n - k) - bd0(k, n p) - bd0(n - k, n (1 - p))
    - log(2 pi k (n - k) / n) / 2, with k - n p formed exactly (``two_prod``): every term is
    O(log n), so the absolute error stays a few 1e-16 (1 + |log pmf|), where the log-gamma
    difference gammaln(n + 1) - gammaln(k + 1) - ... loses ~n 1e-16 (4e-7 at n = 1e8).
    """
    l1p = log1p if xp is jnp else np.log1p
    inner = (k > 0) & (k < n)
    ki, ni = xp.where(inner, k, 1.0), xp.where(inner, n, 2.0)
    hi, lo = two_prod(ni, p)
    d = (ki - hi) - lo
    lc = (stirlerr(ni, xp) - stirlerr(ki, xp) - stirlerr(ni - ki, xp)
          - bregman(ki, hi, d, xp) - bregman(ni - ki, ni * (1.0 - p), -d, xp))
    lf = xp.log(2.0 * np.pi * ki) + l1p(-ki / ni)
    with np.errstate(divide="ignore"):
        edge = xp.where(k == 0, n * l1p(-p), n * xp.log(p))
    return xp.where(inner, lc - 0.5 * lf, edge)


def binom_pmf(k, n, p, xp=jnp):
    """exp(``binom_log_pmf``): relative error a few 1e-16 (1 + |log pmf|)."""
    return xp.exp(binom_log_pmf(k, n, p, xp))


def bernoulli_kl(p, q):
    """KL(Ber(p) || Ber(q)) without validation (``murphyjax.theory.bernoulli_kl`` validates, then calls
    this): bregman(p, q) + bregman(1 - p, 1 - q), each fed the exact difference p - q."""
    d = p - q
    return bregman(p, q, d) + bregman(1.0 - p, 1.0 - q, -d)
