"""A plain NumPy implementation of the same protocol as ``lab.run_row``, looping over rows.

The benchmark baseline (``bench_bandits.py``): the same steps, sizes and dtypes (float32 arrays,
float32 Newton solves) as the JAX laboratory, written the way one would in NumPy: a Python loop
over seeds and cells, and inside a row loops over grid points, replicates, worlds and protocols,
each step vectorised over rounds (and over the lambda grid). Where the JAX laboratory uses a
cheaper algorithm for the same quantity (the exact context tilt through projections, statistics
read from running sums), so does this baseline. Random numbers come from NumPy's PCG64, so the
numbers agree with the JAX run in distribution, not digit for digit.
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.special import expit

F32 = np.float32


def _feat(x):
    return np.concatenate([x, np.ones((x.shape[0], 1), F32)], 1)


def _newton(X, y, w, beta, iters, ridge):
    eye = np.eye(X.shape[1], dtype=F32)
    for _ in range(iters):
        mu = expit(X @ beta)
        g = X.T @ (w * (mu - y)) + ridge * beta
        H = (X * (w * mu * (1 - mu))[:, None]).T @ X + ridge * eye
        beta = beta - np.linalg.solve(H, g)
    return beta.astype(F32)


def _picks(s_hat, lams):
    """2 pi_lambda(a_1 | x) - 1 for every lambda at once, (L, M): tanh(lambda s / 2), sign(s) at inf."""
    lam = np.asarray(lams, F32)[:, None]
    inf = np.isinf(lam)
    return np.where(inf, np.sign(s_hat + 1e-30), np.tanh(0.5 * np.where(inf, 0.0, lam) * s_hat))


def _d1(pe, ph, se, sh, de, dh, alpha, s):
    """D1 curves over the lambda grid from the picks (L, M) on the easy and hard samples."""
    ge = (1 - alpha) * np.mean(0.5 * s * (1 - pe * de), -1)
    gh = alpha * np.mean(0.5 * s * (1 - ph * dh), -1)
    return {"V": 0.5 + 0.5 * s - ge - gh, "G": ge + gh, "G_easy": ge, "G_hard": gh,
            "V_hat": 0.5 + 0.5 * ((1 - alpha) * np.mean(pe * se, -1) + alpha * np.mean(ph * sh, -1))}


def _protocols(u, z, ph, flag, w, eps, grid, cfg):
    """Every testing protocol in one world for one replicate: err, labels per grid n."""
    v = np.where(u < 0.5 + w * eps * z, 1.0, -1.0)
    g = np.asarray(grid) - 1
    a = 2 * np.arctanh(2 * eps * ph)
    L = 2 * np.arctanh(2 * eps)
    err = lambda S: np.where(S * w > 0, 0.0, np.where(S == 0, 0.5, 1.0))
    out = {"majority_all": err(np.cumsum(v)[g]), "bayes_lr": err(np.cumsum(v * a)[g]),
           "oracle": err(np.cumsum(z * v)[g]), "flag_synth": err(np.cumsum(flag * v)[g])}
    for name, path, thr in (("active_lr", np.cumsum(v * a), math.log((1 - cfg.sprt_delta) / cfg.sprt_delta)),
                            ("sprt", np.cumsum(z * v), math.ceil(math.log((1 - cfg.sprt_delta) / cfg.sprt_delta) / L - 1e-9)),
                            ("abstain", np.cumsum(z * v), math.floor(2 * np.arctanh(2 * cfg.abstain_band) / L + 1e-9) + 1)):
        hit = np.nonzero(np.abs(path) >= thr)[0]
        stop = hit[0] if hit.size else len(path)
        out[name] = err(path[np.minimum(stop, g)])
    return out


def run_row(seed, alpha, eps, d, cfg):
    """One (alpha, eps, d, seed) row of the protocol in NumPy; returns a dict of arrays."""
    rng = np.random.default_rng(seed)
    grid, lams, n_max, M = cfg.n_grid, cfg.lam_grid, cfg.n_grid[-1], cfg.eval_size
    G = rng.standard_normal((3, d)).astype(F32)
    Q, _ = np.linalg.qr(G.T)
    theta, ups, xi = (Q[:, i] * np.sign(Q[0, i] + 1e-30) for i in range(3))
    mu_h = (cfg.hard_mean[0] * theta + cfg.hard_mean[1] * ups + cfg.hard_mean[2] * xi).astype(F32)
    gap = lambda x, z: np.where(z > 0, np.where(x @ ups >= 0, 1.0, -1.0), np.where(x @ theta >= 0, 1.0, -1.0))

    def sample(n, z=None):
        z = (rng.random(n) < alpha).astype(F32) if z is None else z
        return rng.standard_normal((n, d), dtype=F32) + z[:, None] * mu_h, z

    x_e, _ = sample(M, np.zeros(M, F32))
    x_h, _ = sample(M, np.ones(M, F32))
    de, dh = gap(x_e, 0), gap(x_h, 1)
    Fe, Fh = _feat(x_e), _feat(x_h)
    x, z = sample(n_max)
    Delta = gap(x, z)
    p_ref = 0.5 + z * eps + (1 - z) * cfg.easy_eps
    y = (rng.random(n_max) < np.where(Delta > 0, p_ref, 1 - p_ref)).astype(F32)
    u_easy = rng.random(n_max)
    Phi = _feat(x)
    out = {}
    # active learner: margin sampling, prefix fits at every grid point
    q = np.zeros(n_max, F32)
    q[: grid[0]] = 1
    beta = np.zeros(d + 1, F32)
    B = []
    for k, n in enumerate(grid):
        if k:
            lo = grid[k - 1]
            c = np.quantile(np.abs(Phi[:1024] @ beta), cfg.active_frac)
            q[lo:n] = np.abs(Phi[lo:n] @ beta) <= c
        beta = _newton(Phi[:n], y[:n], q[:n], beta, cfg.newton_iters[0] if k == 0 else cfg.newton_iters[1], cfg.ridge)
        B.append(beta)
    B = np.array(B)
    picks = [(Fe @ b, Fh @ b) for b in B]
    picks = [(se, sh, _picks(se, lams), _picks(sh, lams)) for se, sh in picks]
    out["d1.G"] = np.array([_d1(pe, ph, se, sh, de, dh, alpha, cfg.reward_scale)["G"] for se, sh, pe, ph in picks])
    out["d2.G"] = np.array([[_d1(pe, ph, se, sh, de, dh, (1 + r) * alpha, cfg.reward_scale)["G"] for se, sh, pe, ph in picks]
                            for r in cfg.rhos])
    # the context tilt q_lambda (exact for a linear proxy): rho in closed form, and the greedy policy's
    # value on the samples shifted by lambda b, through the projections on b, theta and upsilon
    lam_f = np.asarray([v for v in lams if not math.isinf(v)], F32)[:, None]
    pt_e, pu_h = x_e @ theta, x_h @ ups
    for b, (se, sh, _, _) in zip(B, picks):
        w = b[:-1]
        rho = expit(math.log(alpha / (1 - alpha)) + lam_f[:, 0] * (w @ mu_h))
        sgn = lambda u: np.where(u >= 0, 1.0, -1.0)
        ve = np.mean(sgn(se + lam_f * (w @ w)) * sgn(pt_e + lam_f * (w @ theta)), -1)
        vh = np.mean(sgn(sh + lam_f * (w @ w)) * sgn(pu_h + lam_f * (w @ ups)), -1)
        out.setdefault("d1.rho_tilt", []).extend(rho)
        out.setdefault("d1.V_dist", []).extend(0.5 + 0.5 * cfg.reward_scale * ((1 - rho) * ve + rho * vh))
    # audit, flaggers, estimates
    x_a, z_a = sample(cfg.audit_size)
    best = gap(x_a, z_a) > 0
    pr = 0.5 + z_a * eps + (1 - z_a) * cfg.easy_eps
    y_a = (rng.random(cfg.audit_size) < np.where(best, pr, 1 - pr)).astype(F32)
    Fa = _feat(x_a)
    resid = ((Fa @ B[cfg.ref_index] >= 0) != best).astype(F32)
    b_res = _newton(Fa, resid, np.ones_like(resid), np.zeros(d + 1, F32), 10, cfg.ridge)
    half = d // 2
    ma = np.r_[np.ones(half), np.zeros(d - half)].astype(F32)
    ba = _newton(_feat(x_a * ma), y_a, np.ones_like(y_a), np.zeros(d + 1, F32), 10, cfg.ridge)
    bb = _newton(_feat(x_a * (1 - ma)), y_a, np.ones_like(y_a), np.zeros(d + 1, F32), 10, cfg.ridge)
    scores = {"bayes_score": lambda xx: xx @ mu_h, "residual": lambda xx: _feat(xx) @ b_res,
              "disagreement": lambda xx: np.abs(_feat(xx * ma) @ ba - _feat(xx * (1 - ma)) @ bb)}
    thresholds = {}
    for name, sc in scores.items():
        t = np.quantile(sc(x_a), 1 - cfg.keep_factor * alpha)
        out[f"flag.{name}.tau"], out[f"flag.{name}.phi"] = np.mean(sc(x_h) >= t), np.mean(sc(x_e) >= t)
        thresholds[name] = t
    # routed learners (oracle, residual): hard and easy models, prefix fits
    for name, flag in (("oracle", z), ("residual", (scores["residual"](x) >= thresholds["residual"]).astype(F32))):
        easy = (1 - flag) * (u_easy < cfg.p_easy)
        bh, be = np.zeros(d + 1, F32), np.zeros(d + 1, F32)
        Gs = []
        fe = np.zeros(M) if name == "oracle" else scores["residual"](x_e) >= thresholds["residual"]
        fh = np.ones(M) if name == "oracle" else scores["residual"](x_h) >= thresholds["residual"]
        for k, n in enumerate(grid):
            it = cfg.newton_iters[0] if k == 0 else cfg.newton_iters[1]
            ih, ie = np.nonzero(flag[:n])[0], np.nonzero(easy[:n])[0]
            bh = _newton(Phi[ih], y[ih], np.ones(len(ih), F32), bh, it, cfg.ridge)
            be = _newton(Phi[ie], y[ie], np.ones(len(ie), F32), be, it, cfg.ridge)
            se, sh = np.where(fe, Fe @ bh, Fe @ be), np.where(fh, Fh @ bh, Fh @ be)
            Gs.append(_d1(_picks(se, [math.inf]), _picks(sh, [math.inf]), se, sh, de, dh, alpha, cfg.reward_scale)["G"][0])
        out[f"d3.{name}.G"] = np.array(Gs)
    # the two-point testing problem
    mn = float(np.linalg.norm(mu_h))
    errs: dict = {}
    for _ in range(cfg.replicates):
        zz = (rng.random(n_max) < alpha).astype(F32)
        s = rng.standard_normal(n_max, dtype=F32) * mn + zz * mn**2
        ph = expit(s - 0.5 * mn**2 + math.log(alpha / (1 - alpha)))
        u, uf = rng.random(n_max), rng.random(n_max)
        flag = np.where(zz > 0, uf < cfg.synth_tau, uf < cfg.synth_phi).astype(F32)
        for wi, w in enumerate((1.0, -1.0)):
            for p, e in _protocols(u, zz, ph, flag, w, eps, grid, cfg).items():
                errs.setdefault(p, np.zeros((2, len(grid))))[wi] += e / cfg.replicates
    out.update({f"test.{p}.err": e for p, e in errs.items()})
    return out


def run(cfg, rows=None):
    """Run rows (default: the whole grid) one after another; returns (outputs, seconds)."""
    from murphyjax.experiments.lab.runner import rows as row_table

    table = row_table(cfg) if rows is None else rows
    t0 = time.perf_counter()
    outs = [run_row(hash((cfg.seed, r["alpha"], r["eps"], r["d"], r["seed"])) % 2**32, r["alpha"], r["eps"], r["d"], cfg)
            for r in table]
    return outs, time.perf_counter() - t0
