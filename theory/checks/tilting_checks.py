"""Checks of the tilting calculus (Section 3.4, Appendix C) against autodiff and enumeration."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from murphyjax.theory import tilting as TL
from murphyjax.theory.checks._core import Row, check, f

LAMS = jnp.linspace(-3.0, 3.0, 61)


def random_model(key, K=12):
    """A random finite model: base law, score, a 0/1 hard set and a bounded f."""
    k = jax.random.split(key, 4)
    mu = jax.random.dirichlet(k[0], jnp.ones(K))
    s = jax.random.normal(k[1], (K,))
    h = (jax.random.uniform(k[2], (K,)) < 0.35).astype(jnp.float64).at[0].set(1.0).at[1].set(0.0)
    fx = jax.random.uniform(k[3], (K,))
    return jnp.log(mu), s, h, fx


def maxabs(a, b):
    return f(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


@check(('C2',))
def tilt_identities(key):
    lm, s, h, fx = random_model(key)
    t = TL.tilt(lm, s, LAMS)
    A = lambda l: TL.tilt(lm, s, l).log_partition
    dA = jax.vmap(jax.grad(A))(LAMS)
    d2A = jax.vmap(jax.grad(jax.grad(A)))(LAMS)
    dEf = jax.vmap(jax.grad(lambda l: TL.tilt(lm, s, l).mean(fx)))(LAMS)
    dKL = jax.vmap(jax.grad(lambda l: TL.tilt(lm, s, l).kl()))(LAMS)
    mu = jnp.exp(lm)
    rev_direct = jnp.sum(mu * (lm - t.log_probs), axis=-1)
    kl = t.kl()
    mono = f(jnp.min(LAMS * dKL))
    # C.2 says both KLs are convex in lam. KL(mu||q) = A - lam E_mu[s] has second derivative
    # A'' >= 0: convex. KL(q||mu) = lam A' - A has second derivative A'' + lam A^(3) (A^(3) = third
    # cumulant of s under q), which is negative e.g. for a Bernoulli(0.1) base, s = 1{x = 1}.
    d2KL = jax.vmap(jax.grad(jax.grad(lambda l: TL.tilt(lm, s, l).kl())))(LAMS)
    sc = s - t.mean(s)[:, None]
    k3 = jnp.sum(t.probs * sc**3, axis=-1)
    d2rev = jax.vmap(jax.grad(jax.grad(lambda l: TL.tilt(lm, s, l).reverse_kl())))(LAMS)
    lb = jnp.log(jnp.array([0.9, 0.1]))
    sb = jnp.array([0.0, 1.0])
    lg = jnp.linspace(0.0, 8.0, 81)
    d2b = jax.vmap(jax.grad(jax.grad(lambda l: TL.tilt(lb, sb, l).kl())))(lg)
    ib = int(jnp.argmin(d2b))
    grid = "61 lambdas in [-3, 3], random K=12 model, max |diff|"
    return [
        Row("C2.dA_mean", "C.2", "A'(lam) = E_q[s]; " + grid, 0.0, maxabs(dA, t.mean(s)), "jax.grad", 1e-12),
        Row("C2.d2A_var", "C.2", "A''(lam) = Var_q(s); " + grid, 0.0, maxabs(d2A, t.var(s)), "jax.grad twice", 1e-12),
        Row("C2.dEf_cov", "C.2 eq. (2) / B.3", "d/dlam E_q[f] = Cov_q(f, s); " + grid, 0.0, maxabs(dEf, t.cov(fx, s)), "jax.grad", 1e-12),
        Row("C2.kl", "C.2", "KL(q||mu) = lam A' - A vs sum q log(q/mu); " + grid, 0.0, maxabs(kl, t.kl_direct()), "enumeration", 1e-12),
        Row("C2.reverse_kl", "C.2", "KL(mu||q) = A - lam E_mu[s] vs sum mu log(mu/q); " + grid, 0.0, maxabs(t.reverse_kl(), rev_direct), "enumeration", 1e-12),
        Row("C2.dkl", "C.2", "d/dlam KL(q||mu) = lam Var_q(s); " + grid, 0.0, maxabs(dKL, t.dkl_dlam()), "jax.grad", 1e-12),
        Row("C2.kl_monotone", "C.2", "KL(q||mu) nondecreasing in |lam|: min of lam dKL/dlam over the grid", 0.0, mono, "jax.grad", 0.0, kind="bound", direction=">="),
        Row("C2.reverse_convex", "C.2", "KL(mu||q) convex: d2/dlam2 = A'' = Var_q(s) >= 0 (max |d2 - Var| on the grid)", 0.0, maxabs(d2rev, t.var(s)), "jax.grad twice", 1e-12),
        Row("C2.kl_curvature", "C.2 (corrected)", "d2/dlam2 KL(q||mu) = A'' + lam A^(3) (third cumulant); " + grid, 0.0, maxabs(d2KL, t.var(s) + LAMS * k3), "jax.grad twice", 1e-11),
        Row("C2.kl_convex_paper", "C.2 as written", f"KL(q||mu) convex in lam: Bernoulli(0.1) base, s = 1{{x=1}}, d2KL/dlam2 at lam = {float(lg[ib]):.1f}",
            0.0, f(d2b[ib]), "jax.grad twice", 0.0, kind="bound", direction=">=", erratum=True, note="forward KL is not convex in general"),
    ]


@check(('prop1', 'C3', 'C4'))
def hard_mass_laws(key):
    lm, s, h, _ = random_model(key)
    d = TL.hard_mass_drift(lm, s, h, LAMS)
    dlog = jax.vmap(jax.grad(lambda l: jnp.log(TL.hard_mass(lm, s, h, l))))(LAMS)
    drho = jax.vmap(jax.grad(lambda l: TL.hard_mass(lm, s, h, l)))(LAMS)
    cs = TL.hard_mass_cs_bound(lm, s, h, LAMS)
    lam = 2.5
    integ = f(TL.hard_mass_cs_integrated(lm, s, h, lam))
    change = abs(f(TL.hard_mass(lm, s, h, lam)) - f(TL.hard_mass(lm, s, h, 0.0)))
    # C.3: remainder of the first-order expansion is rho''(0) lam^2 / 2 + O(lam^3)
    l0 = 1e-3
    rem = f(TL.hard_mass(lm, s, h, l0) - TL.hard_mass_first_order(lm, s, h, l0))
    rho2 = f(jax.grad(jax.grad(lambda l: TL.hard_mass(lm, s, h, l)))(0.0))
    return [
        Row("prop1.log_drift", "Prop 1 / Prop 2 / A.7", "d log rho / d lam = Cov_q(H, s)/rho; 61 lambdas, max |diff|", 0.0, maxabs(dlog, d["log_drift"]), "jax.grad", 1e-12),
        Row("prop1.drift", "C.4 / D.2", "rho'(lam) = Cov_q(H, s); 61 lambdas, max |diff|", 0.0, maxabs(drho, d["drift"]), "jax.grad", 1e-12),
        Row("C3.expansion", "C.3 eq. (3)", "rho(lam) - (alpha + lam Cov_mu(H, s)) = rho''(0) lam^2/2 + O(lam^3) at lam = 1e-3 (relative)",
            rho2 * l0**2 / 2, rem, "jax.grad twice", 1e-2, relative=True),
        Row("C4.cauchy_schwarz", "C.4", "|rho'(lam)| <= sqrt(rho(1-rho)) sqrt(A''(lam)); largest |rho'| - bound over 61 lambdas",
            0.0, f(jnp.max(jnp.abs(d["drift"]) - cs)), "grid", 0.0, kind="bound"),
        Row("C4.integrated", "C.4", f"|rho({lam}) - rho(0)| <= int_0^lam sqrt(rho(1-rho) A'') dt", integ, change, "Simpson, 4001 points", 0.0, kind="bound"),
    ]


@check(('C6',))
def vector_tilting(key):
    lm, s, _, fx = random_model(key)
    k = jax.random.split(jax.random.fold_in(key, 7), 2)
    S = jnp.stack([s, jax.random.normal(k[0], s.shape), jnp.abs(s)], 1)
    theta = jnp.array([0.7, -0.4, 0.3])
    out = TL.vector_tilt(lm, S, theta)
    A = lambda th: TL.vector_log_partition(lm, S, th)
    ef = lambda th: jnp.sum(jax.nn.softmax(lm + S @ th) * fx)
    covf = (out["probs"] * (fx - out["probs"] @ fx)) @ (S - out["mean"])
    return [
        Row("C6.grad_mean", "C.6", "grad A(theta) = E_q[s] (k = 3), max |diff|", 0.0, maxabs(jax.grad(A)(theta), out["mean"]), "jax.grad", 1e-12),
        Row("C6.hessian_cov", "C.6", "Hessian A(theta) = Cov_q(s, s), max |diff|", 0.0, maxabs(jax.hessian(A)(theta), out["cov"]), "jax.hessian", 1e-12),
        Row("C6.grad_Ef", "C.6", "grad_theta E_q[f] = Cov_q(f, s), max |diff|", 0.0, maxabs(jax.grad(ef)(theta), covf), "jax.grad", 1e-12),
    ]


def _generic_i_projection(lm, s, m, steps=200):
    """Minimise KL(Q||mu) s.t. E_Q[s] = m over all Q (softmax logits), augmented Lagrangian + L-BFGS.

    Knows nothing of exponential families: the independent computation for C.5.
    """
    mu = jnp.exp(lm)

    def lagr(z, y, c):
        q = jax.nn.softmax(z)
        kl = jnp.sum(q * (jnp.log(q) - lm))
        g = jnp.sum(q * s) - m
        return kl + y * g + 0.5 * c * g**2

    opt = optax.lbfgs()

    def outer(carry, _):
        z, y, c = carry
        obj = lambda zz: lagr(zz, y, c)
        vg = optax.value_and_grad_from_state(obj)
        state = opt.init(z)

        def inner(st, _):
            z, state = st
            v, g = vg(z, state=state)
            upd, state = opt.update(g, state, z, value=v, grad=g, value_fn=obj)
            return (optax.apply_updates(z, upd), state), None

        (z, _), _ = jax.lax.scan(inner, (z, state), None, length=steps)
        gap = jnp.sum(jax.nn.softmax(z) * s) - m
        return (z, y + c * gap, c * 4.0), None

    (z, _, _), _ = jax.lax.scan(outer, (jnp.log(mu), 0.0, 10.0), None, length=6)
    q = jax.nn.softmax(z)
    return q, jnp.sum(q * (jnp.log(q) - lm))


@check(('C5',))
def i_projection(key):
    lm, s, _, _ = random_model(key)
    m = 0.5 * (f(jnp.sum(jnp.exp(lm) * s)) + f(jnp.max(s)))
    lam, t = TL.i_projection(lm, s, m)
    q_gen, kl_gen = _generic_i_projection(lm, s, m)
    # perturbations that keep E_Q[s] = m: directions orthogonal to (1, s)
    k = jax.random.fold_in(key, 3)
    V_ = jax.random.normal(k, (2000, s.shape[0]))
    B = jnp.stack([jnp.ones_like(s), s], 1)
    P = jnp.eye(s.shape[0]) - B @ jnp.linalg.solve(B.T @ B, B.T)
    V_ = V_ @ P
    q = t.probs
    step = 0.5 * f(jnp.min(q)) / jnp.max(jnp.abs(V_), axis=1, keepdims=True)
    Q = q + step * V_
    klQ = jnp.sum(Q * (jnp.log(Q) - lm), axis=1)
    return [
        Row("C5.moment", "C.5", "E_{q_lam*}[s] = m at the solved lam*", m, f(t.mean(s)), "root finding", 1e-12),
        Row("C5.optimal", "C.5", "KL(Q||mu) >= KL(q_lam*||mu) for 2000 random Q with E_Q[s] = m (smallest difference)",
            f(t.kl()), f(jnp.min(klQ)), "feasible perturbations", 1e-15, kind="bound", direction=">="),
        Row("C5.generic", "C.5", "q_lam* equals a generic constrained KL minimiser (augmented Lagrangian, L-BFGS), max |q - q_gen|",
            0.0, maxabs(q, q_gen), "optax", 1e-8),
    ]


@check(('gauss', 'exp'))
def closed_form_families(key):
    # Gaussian: compare with an exact finite tilt of a fine discretisation of N(m, v)
    m, v, a, lam = 0.3, 2.0, 1.5, 0.4
    x = jnp.linspace(m - 40.0, m + 40.0, 200001)
    lw = -0.5 * (x - m) ** 2 / v
    lw = lw - jax.scipy.special.logsumexp(lw)
    t = TL.tilt(lw, a * x, lam)
    g = TL.gaussian_tilt(lam, [m], [[v]], [a])
    # multivariate: self-normalised importance sampling for the mean shift
    k = jax.random.split(key, 2)
    C = jnp.array([[1.0, 0.5], [0.5, 2.0]])
    mm = jnp.array([0.1, -0.2])
    d = jnp.array([0.3, -0.6])
    X = mm + jax.random.normal(k[0], (400000, 2)) @ jnp.linalg.cholesky(C).T
    w = jax.nn.softmax(0.8 * X @ d)
    est = w @ X
    ess = 1.0 / jnp.sum(w**2)
    se = f(jnp.sqrt(jnp.max(jnp.diag(C)) / ess))
    g2 = TL.gaussian_tilt(0.8, mm, C, d)
    # exponential score Exp(rate): finite discretisation of the density
    rate, le = 2.0, 1.3
    h = 1e-4
    y = (jnp.arange(600000) + 0.5) * h  # midpoint rule on [0, 60]
    ly = -rate * y
    ly = ly - jax.scipy.special.logsumexp(ly)
    te = TL.tilt(ly, y, le)
    ex = TL.exponential_score_tilt(le, rate)
    return [
        Row("gauss.mean", "C.1 (Gaussian family)", "tilted mean m + lam v a vs finite tilt of a 200001-point grid",
            f(g["mean"][0]), f(t.mean(x)), "enumeration on a grid", 1e-9),
        Row("gauss.kl", "C.2 (Gaussian family)", "KL = lam^2 a^2 v / 2 vs finite tilt on the grid", f(g["kl"]), f(t.kl()), "enumeration on a grid", 1e-9),
        Row("gauss.mean_2d", "C.6 (Gaussian family)", f"2-D tilted mean shift lam C a vs importance sampling (SE {se:.2g})",
            0.0, maxabs(g2["mean"], est), "Monte Carlo, 4e5 draws", 4 * se),
        Row("exp.mean", "C.1 (exponential score)", f"Exp({rate}) tilted by lam={le}: mean 1/(rate - lam) vs midpoint grid, h=1e-4",
            f(ex["mean"]), f(te.mean(y)), "enumeration on a grid", 1e-7),
        Row("exp.kl", "C.2 (exponential score)", "KL(q||mu) = lam/(rate-lam) - log(rate/(rate-lam)) vs midpoint grid", f(ex["kl"]), f(te.kl()), "enumeration on a grid", 1e-7),
    ]
