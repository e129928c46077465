"""Checks of the v1 Alignment Gap, its Gaussian closed form and the heavy-tail results."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from murphyjax.theory import gap as G
from murphyjax.theory import tilting as TL
from murphyjax.theory.checks._core import Row, check, f

BETAS = jnp.linspace(0.0, 4.0, 41)


def policy_model(key, C=5, Y=9):
    """Random contexts x responses: pi_0, true utility U and proxy r_hat = U + error."""
    k = jax.random.split(key, 4)
    lp = jax.nn.log_softmax(jax.random.normal(k[0], (C, Y)), axis=-1)
    u = jax.random.normal(k[1], (C, Y))
    err = 0.8 * jax.random.normal(k[2], (C, Y)) + 0.6 * jnp.maximum(u, 0) ** 2  # error grows with U: Goodhart
    w = jax.random.dirichlet(k[3], jnp.ones(C))
    return lp, u + err, u, w


@check(('v1',))
def v1_gap(key):
    lp, r, u, w = policy_model(key)
    out = G.alignment_gap(lp, r, u, BETAS, w)
    dgap = jax.vmap(jax.grad(lambda b: G.alignment_gap(lp, r, u, b, w)["gap"]))(BETAS)
    dtrue = jax.vmap(jax.grad(lambda b: G.alignment_gap(lp, r, u, b, w)["true_mean"]))(BETAS)
    kl_direct = jnp.sum(w * TL.tilt(lp, r, BETAS).kl_direct(), axis=-1)
    peak = G.true_utility_peak(lp, r, u, w)
    rows = [
        Row("v1.slope", "v1 gap / C.2", "d gap/d beta = E_c Cov(r_hat - U, r_hat); 41 betas, 5 contexts, max |diff|",
            0.0, f(jnp.max(jnp.abs(dgap - out["slope"]))), "jax.grad", 1e-12),
        Row("v1.true_slope", "v1 gap / C.2", "d E[U]/d beta = E_c Cov(U, r_hat); max |diff|", 0.0,
            f(jnp.max(jnp.abs(dtrue - out["true_slope"]))), "jax.grad", 1e-12),
        Row("v1.kl", "C.2", "E_c KL(pi_beta||pi_0) = E_c(beta A' - A) vs direct sum", 0.0,
            f(jnp.max(jnp.abs(out["kl"] - kl_direct))), "enumeration", 1e-12),
    ]
    if peak["found"]:
        at = f(jax.grad(lambda b: G.alignment_gap(lp, r, u, b, w)["true_mean"])(peak["beta"]))
        best_grid = f(jnp.max(G.alignment_gap(lp, r, u, jnp.linspace(0, 50, 2001), w)["true_mean"]))
        rows += [
            Row("v1.peak_stationary", "related-theory 0", f"true utility peak at beta*={peak['beta']:.4f}: d E[U]/d beta = 0 there",
                0.0, at, "jax.grad", 1e-10),
            Row("v1.peak_max", "related-theory 0", "E[U](beta*) >= E[U] on a 2001-point grid of [0, 50]",
                peak["true_mean"], best_grid, "grid", 1e-12, kind="bound"),
        ]
    return rows


@check(('gauss_gap',))
def gaussian_closed_form(key):
    vu, vn, c, lam = 1.0, 0.5, 0.2, 1.3
    g = G.gaussian_gap(lam, vu, vn, c)
    # exact finite tilt of a fine 2-D discretisation of (U, N)
    n = 801
    z = jnp.linspace(-9.0, 9.0, n)
    Z1, Z2 = jnp.meshgrid(z, z, indexing="ij")
    L = jnp.linalg.cholesky(jnp.array([[vu, c], [c, vn]]))
    U = L[0, 0] * Z1
    N = L[1, 0] * Z1 + L[1, 1] * Z2
    lw = (-0.5 * (Z1**2 + Z2**2)).reshape(-1)
    lw = lw - jax.scipy.special.logsumexp(lw)
    t = TL.tilt(lw, (U + N).reshape(-1), lam)
    return [
        Row("gauss_gap.true", "related-theory 5.5", "E_lam[U] = lam (var_true + c) vs finite tilt of an 801^2 grid", f(g["true_mean"]), f(t.mean(U.reshape(-1))), "enumeration on a grid", 1e-8),
        Row("gauss_gap.gap", "related-theory 5.5", "gap = lam (var_noise + c): linear in lam", f(g["gap"]), f(t.mean(N.reshape(-1))), "enumeration on a grid", 1e-8),
        Row("gauss_gap.kl", "related-theory 5.5", "KL = lam^2 Var(P)/2", f(g["kl"]), f(t.kl()), "enumeration on a grid", 1e-8),
    ]


@check(('exp_gap', 'kwa', 'goodhart'))
def heavy_tails(key):
    rows = []
    # exponential error: closed form vs grid
    a, b = 2.0, 1.0
    rows.append(Row("exp_gap.saturation", "related-theory 4.4/5.5", "U~Exp(2), N~Exp(1): E[U] at lam=0.999 close to its limit 1/(a-b) = 1 while the proxy exceeds 1000",
                    1.0, f(G.exponential_gap(0.999, a, b)["true_mean"]), "closed form", 2e-3))
    # Kwa Thm 1 on a Lomax error: closed-form mean and KL vs numerical integration
    t, c, k = 50.0, 1.0, 2.5
    km = G.kwa_tail_mixture(t, c, k)
    x = jnp.expm1(jnp.linspace(0.0, jnp.log1p(1e7), 2_000_001))  # log-spaced grid on [0, 1e7]
    logpdf = jnp.log(k) - (k + 1.0) * jnp.log1p(x)
    F = 1.0 - (1.0 + t) ** (-k)
    wq = jnp.exp(logpdf)
    scale = jnp.where(x <= t, (1 - c / t) / F, (c / t) / (1 - F))
    dx = jnp.gradient(x)
    mean_num = jnp.sum(x * scale * wq * dx)
    kl_num = jnp.sum(scale * wq * jnp.log(scale) * dx)
    rows += [
        Row("kwa.mean", "Kwa et al. Thm 1 (Lomax)", f"E_P[X] of the tail-moved law (t={t}, c={c}, k={k}) vs numerical integration",
            f(km["error_mean"]), f(mean_num), "quadrature on a log grid", 1e-3, relative=True),
        Row("kwa.kl", "Kwa et al. Thm 1 (Lomax)", "KL(P||Q) closed form vs numerical integration", f(km["kl"]), f(kl_num), "quadrature on a log grid", 1e-3, relative=True),
    ]
    far = G.kwa_tail_mixture(1e12, c, k)
    rows.append(Row("kwa.limit", "Kwa et al. Thm 1", "t=1e12: proxy error gains >= c k/(k-1) - 1e-6 at KL <= 1e-9 (true utility unchanged)",
                    f(far["base_error_mean"]) + c * k / (k - 1) - 1e-6, f(far["error_mean"]), "closed form", 0.0, kind="bound", direction=">=",
                    note=f"KL = {f(far['kl']):.2e}"))
    # conditioning on the proxy: Monte Carlo vs quadrature
    kk = jax.random.split(key, 2)
    Nmc = 2_000_000
    V_ = jax.random.normal(kk[0], (Nmc,))
    Xn = 2.0 * jax.random.normal(kk[1], (Nmc,))
    Xt = jax.random.t(kk[1], 3.0, (Nmc,))
    for name, X, thr, q in [("normal", Xn, 3.0, G.conditional_true_mean(3.0, "normal", 2.0)),
                            ("student_t", Xt, 4.0, G.conditional_true_mean(4.0, "student_t", 1.0, df=3.0))]:
        sel = (V_ + X) >= thr
        m = jnp.sum(V_ * sel) / jnp.sum(sel)
        se = f(jnp.sqrt(jnp.sum(sel * (V_ - m) ** 2) / jnp.sum(sel) ** 2))
        rows.append(Row(f"goodhart.{name}", "Kwa et al. Thms 5-6", f"E[V | V + X >= {thr}] for {name} X vs Monte Carlo (SE {se:.2g})",
                        f(q), f(m), "Monte Carlo, 2e6 draws", 4 * se))
    hi = f(G.conditional_true_mean(1000.0, "student_t", 1.0, df=3.0))
    lo = f(G.conditional_true_mean(10.0, "normal", 1.0))
    rows.append(Row("goodhart.heavy_limit", "Kwa et al. Thm 5", "heavy (t_3) error: E[V | V+X >= 1000] <= 0.005 (back to E[V] = 0; decays like 3/t)",
                    0.005, hi, "quadrature", 0.0, kind="bound"))
    rows.append(Row("goodhart.light_limit", "Kwa et al. Thm 6", "light (normal) error: E[V | V+X >= 10] >= 4 (grows without bound)",
                    4.0, lo, "quadrature", 0.0, kind="bound", direction=">="))
    return rows
