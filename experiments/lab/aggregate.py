"""Turn the per-row arrays of a run into tidy tables (lists of dicts), each next to its bound.

Statistics: the paper's medians over seeds with 90 % intervals (5 % and 95 % quantiles) for
per-seed quantities; for error probabilities of the testing problem the transcripts of all seeds
(and both dimensions d: the testing problem does not depend on d, it sees x only through
mu_h^T x) are pooled and given with a 99 % Wilson interval. A bound "holds" at a grid point unless
the whole 99 % interval lies below it.
"""

from __future__ import annotations

import math

import numpy as np

from murphyjax import theory as T
from murphyjax.bandits import diagnostics as D
from murphyjax.bandits import exact
from murphyjax.experiments.lab.row import TEST_PROTOCOLS

FLAG_EXACT = ("bayes_score", "residual", "disagreement")


def _groups(table, keys):
    out: dict = {}
    for i, r in enumerate(table):
        out.setdefault(tuple(r[k] for k in keys), []).append(i)
    return out


def _q(x):
    m, lo, hi = D.quantile_summary(np.asarray(x, np.float64), axis=0)
    return float(m), float(lo), float(hi)


def _f(x):
    return float(np.asarray(x))


def bound_table(cfg, table, A):
    """Empirical minimax sign error / value gap of every protocol vs Theorem 1's lower bound."""
    rows = []
    grid = np.asarray(cfg.n_grid, np.float64)
    for (a, e), idx in _groups(table, ("alpha", "eps")).items():
        gamma = a * cfg.reward_scale
        kap = _f(T.kappa(e))
        N = len(idx) * cfg.replicates
        lb_err = np.asarray(T.sign_error_lower_bound(grid, a, e))
        exact_err = {
            "majority_all": exact.routed_majority_error(grid, a, e, 1.0, 1.0),
            "oracle": exact.routed_majority_error(grid, a, e, 1.0, 0.0),
            "flag_synth": exact.routed_majority_error(grid, a, e, cfg.synth_tau, cfg.synth_phi),
        }
        for p in TEST_PROTOCOLS:
            err = A[f"test.{p}.err"][idx].mean(axis=0)  # (2 worlds, K)
            mm = err.max(axis=0)
            lo, hi = D.wilson_interval(mm, N)
            labels = A[f"test.{p}.labels"][idx].mean(axis=0)[0]
            draws = A[f"test.{p}.draws"][idx].mean(axis=0)[0]
            for k, n in enumerate(cfg.n_grid):
                rows.append({"alpha": a, "eps": e, "protocol": p, "source": "simulated", "n": n,
                             "n_alpha_kappa": n * a * kap, "lower_bound_err": lb_err[k],
                             "lower_bound_gap": gamma * lb_err[k], "minimax_err": mm[k], "err_lo99": lo[k],
                             "err_hi99": hi[k], "minimax_gap": gamma * mm[k],
                             "exact_err": float(exact_err[p][k]) if p in exact_err else math.nan,
                             "mean_labels": labels[k], "mean_draws": draws[k], "transcripts": N,
                             "holds": bool(hi[k] >= lb_err[k])})
        for f in FLAG_EXACT:  # learned / score flaggers: exact error at each seed's (tau, phi)
            tau = A[f"flag.{f}.tau"][idx]
            phi = A[f"flag.{f}.phi"][idx]
            ok = tau > 0
            for k, n in enumerate(cfg.n_grid):
                errs = np.where(ok, exact.routed_majority_error(n, a, e, np.where(ok, tau, 1.0), phi), 0.5)
                m, q05, q95 = _q(errs)
                rows.append({"alpha": a, "eps": e, "protocol": f"flag_{f}", "source": "exact (median over seeds)",
                             "n": n, "n_alpha_kappa": n * a * kap, "lower_bound_err": lb_err[k],
                             "lower_bound_gap": gamma * lb_err[k], "minimax_err": m, "err_lo99": q05,
                             "err_hi99": q95, "minimax_gap": gamma * m, "exact_err": m,
                             "mean_labels": n * float(np.median(a * tau + (1 - a) * phi)), "mean_draws": n,
                             "transcripts": len(idx), "holds": bool(np.all(errs >= lb_err[k] - 1e-12))})
        for (d,), didx in _groups([table[i] for i in idx], ("d",)).items():
            rid = [idx[i] for i in didx]
            G = A["d1.G"][rid][:, :, -1]  # greedy (last lambda must be inf) active learner
            for k, n in enumerate(cfg.n_grid):
                m, q05, q95 = _q(G[:, k])
                rows.append({"alpha": a, "eps": e, "protocol": f"logistic_active_d{d}", "source": "simulated G(inf)",
                             "n": n, "n_alpha_kappa": n * a * kap, "lower_bound_err": lb_err[k],
                             "lower_bound_gap": gamma * lb_err[k], "minimax_err": m / gamma, "err_lo99": q05 / gamma,
                             "err_hi99": q95 / gamma, "minimax_gap": m, "exact_err": math.nan,
                             "mean_labels": float(np.median(A["active.labels"][rid][:, k])), "mean_draws": n,
                             "transcripts": len(rid), "holds": bool(q95 >= gamma * lb_err[k])})
    return rows


def kl_table(cfg, table, A):
    """Measured transcript KL (under P^+) and queried hits vs n alpha kappa(eps) and n alpha (Lemma 2)."""
    rows = []
    for (a, e), idx in _groups(table, ("alpha", "eps")).items():
        kap = _f(T.kappa(e))
        for p in TEST_PROTOCOLS:
            kl = A[f"test.{p}.kl"][idx][:, 0].mean(axis=0)
            llr = A[f"test.{p}.llr"][idx][:, 0].mean(axis=0)
            hits = A[f"test.{p}.hits"][idx][:, 0].mean(axis=0)
            N = len(idx) * cfg.replicates
            for k, n in enumerate(cfg.n_grid):
                bound = n * a * kap
                tol = 3 * math.sqrt(n * a / N)  # 3 Monte Carlo sd of the mean hit count (oracle: equality case)
                rows.append({"alpha": a, "eps": e, "protocol": p, "n": n, "kl": kl[k], "llr_mean": llr[k],
                             "bound_n_alpha_kappa": bound, "kl_over_bound": kl[k] / bound, "hits": hits[k],
                             "n_alpha": n * a, "mc_tol_hits": tol, "kl_holds": bool(kl[k] <= bound + kap * tol + 1e-6),
                             "lemma2_holds": bool(hits[k] <= n * a + tol)})
    return rows


def d1_table(cfg, table, A):
    """D1: V_+(pi_lambda), V_hat, G, G_hat, G_easy, G_hard and rho(lambda): medians + 90 % intervals."""
    rows = []
    fields = ("V", "V_hat", "G", "G_hat", "G_easy", "G_hard", "rho_tilt", "rho_tilt_mc", "rho_ess", "V_dist", "V_hat_dist")
    for (d, a, e), idx in _groups(table, ("d", "alpha", "eps")).items():
        for k, n in enumerate(cfg.n_grid):
            for j, lam in enumerate(cfg.lam_grid):
                r = {"d": d, "alpha": a, "eps": e, "n": n, "lam": lam}
                for f in fields:
                    if (f.startswith("rho") or f.endswith("_dist")) and math.isinf(lam):
                        r[f], r[f + "_q05"], r[f + "_q95"] = (math.nan,) * 3
                        continue
                    r[f], r[f + "_q05"], r[f + "_q95"] = _q(A[f"d1.{f}"][idx][:, k, j])
                rows.append(r)
    return rows


def d2_table(cfg, table, A):
    """D2: G_rho(lambda) under mu_rho, alpha_rho = (1 + rho) alpha."""
    rows = []
    for (d, a, e), idx in _groups(table, ("d", "alpha", "eps")).items():
        for i, rho in enumerate(cfg.rhos):
            for k, n in enumerate(cfg.n_grid):
                for j, lam in enumerate(cfg.lam_grid):
                    m, lo, hi = _q(A["d2.G"][idx][:, i, k, j])
                    rows.append({"d": d, "alpha": a, "eps": e, "rho": rho, "alpha_rho": (1 + rho) * a, "n": n,
                                 "lam": lam, "G": m, "G_q05": lo, "G_q95": hi})
    return rows


def d3_logistic_table(cfg, table, A):
    """D3 with the logistic learner: greedy gaps per n and the draws/labels needed to reach eta."""
    curves, reach = [], []
    learners = {"no routing (active, oracle-free)": ("d1.G", "d1.G_hard", "active.labels", True),
                "routed by oracle h": ("d3.oracle.G", "d3.oracle.G_hard", "d3.oracle.labels", False),
                "routed by residual flagger": ("d3.residual.G", "d3.residual.G_hard", "d3.residual.labels", False)}
    grid = np.asarray(cfg.n_grid)
    for (d, a, e), idx in _groups(table, ("d", "alpha", "eps")).items():
        gamma = a * cfg.reward_scale
        for name, (g, gh, lab, greedy_last) in learners.items():
            G = A[g][idx][:, :, -1] if greedy_last else A[g][idx]
            Gh = A[gh][idx][:, :, -1] if greedy_last else A[gh][idx]
            L = A[lab][idx]
            for k, n in enumerate(cfg.n_grid):
                curves.append({"d": d, "alpha": a, "eps": e, "learner": name, "n": n,
                               **_named("G", _q(G[:, k])), **_named("G_hard", _q(Gh[:, k])),
                               **_named("labels", _q(L[:, k]))})
            for frac in cfg.eta_fracs:
                eta = frac * gamma
                for which, vals in (("G", G), ("G_hard", Gh)):
                    first = D.first_reach(vals, grid, eta)
                    labels_at = np.where(np.isfinite(first), L[np.arange(len(idx)), np.clip(np.searchsorted(grid, first), 0, len(grid) - 1)], np.inf)
                    reach.append({"d": d, "alpha": a, "eps": e, "learner": name, "target": which,
                                  "eta_over_gamma": frac, "eta": eta, **_named("draws", _q(first)),
                                  **_named("labels", _q(labels_at)), "reached_frac": float(np.isfinite(first).mean()),
                                  "Q_theorem2": _f(T.oracle_queries(a, e, gamma, eta))})
    return curves, reach


def _named(prefix, q):
    return {prefix: q[0], f"{prefix}_q05": q[1], f"{prefix}_q95": q[2]}


def d3_twopoint_table(cfg, table, A):
    """D3 in the two-point setting of Theorem 2: exact draws for a value gap <= eta per flagger."""
    rows = []
    for (a, e), idx in _groups(table, ("alpha", "eps")).items():
        gamma = a * cfg.reward_scale
        fl = {"oracle h": (np.ones(len(idx)), np.zeros(len(idx))),
              "no routing (majority of all labels)": (np.ones(len(idx)), np.ones(len(idx))),
              "synthetic (tau, phi)": (np.full(len(idx), cfg.synth_tau), np.full(len(idx), cfg.synth_phi))}
        for f in FLAG_EXACT:
            fl[f"{f} flagger"] = (A[f"flag.{f}.tau"][idx], A[f"flag.{f}.phi"][idx])
        for frac in cfg.eta_fracs:
            eta = frac * gamma
            for name, (tau, phi) in fl.items():
                ok = tau > 0
                draws = np.full(len(idx), np.inf)
                if ok.any():
                    draws[ok] = exact.draws_to_reach(frac, a, e, tau[ok], phi[ok], rtol=1e-3, max_draws=2**33)
                tmed = float(np.median(tau))
                rows.append({"alpha": a, "eps": e, "eta_over_gamma": frac, "eta": eta, "flagger": name,
                             "tau_median": tmed, "phi_median": float(np.median(phi)), **_named("draws_exact", _q(draws)),
                             "Q_theorem2_hoeffding": _f(T.oracle_queries(a, e, gamma, eta)),
                             "Q_theorem3_T_over_alpha_tau": _f(T.oracle_queries(a, e, gamma, eta, tpr=max(tmed, 1e-9))),
                             "Q_diluted": _f(T.diluted_flagger_queries(a, e, gamma, eta, max(tmed, 1e-9),
                                                                       float(np.median(phi))))})
        for p in ("bayes_lr", "majority_all", "oracle", "sprt", "active_lr"):  # simulated, coarse (grid)
            err = A[f"test.{p}.err"][idx].mean(axis=0).max(axis=0)
            for frac in cfg.eta_fracs:
                first = D.first_reach(err, cfg.n_grid, frac)
                rows.append({"alpha": a, "eps": e, "eta_over_gamma": frac, "eta": frac * gamma,
                             "flagger": f"simulated {p}", "tau_median": math.nan, "phi_median": math.nan,
                             "draws_exact": float(first), "draws_exact_q05": math.nan, "draws_exact_q95": math.nan,
                             "Q_theorem2_hoeffding": _f(T.oracle_queries(a, e, gamma, frac * gamma)),
                             "Q_theorem3_T_over_alpha_tau": math.nan, "Q_diluted": math.nan})
    return rows


def flagger_table(cfg, table, A):
    rows = []
    for (d, a, e), idx in _groups(table, ("d", "alpha", "eps")).items():
        for f in FLAG_EXACT:
            rows.append({"d": d, "alpha": a, "eps": e, "flagger": f, "keep_rate": cfg.keep_factor * a,
                         **_named("tau", _q(A[f"flag.{f}.tau"][idx])), **_named("phi", _q(A[f"flag.{f}.phi"][idx])),
                         **_named("tau_audit", _q(A[f"flag.{f}.tau_audit"][idx])),
                         **_named("phi_audit", _q(A[f"flag.{f}.phi_audit"][idx])),
                         "hit_fraction": _f(T.flagger_hit_fraction(a, max(float(np.median(A[f"flag.{f}.tau"][idx])), 1e-9),
                                                                   float(np.median(A[f"flag.{f}.phi"][idx]))))})
    return rows


def estimates_table(cfg, table, A):
    """Section 5.6: (alpha, eps, gamma) from the audit set and the plug-in lower bound at n_max."""
    rows = []
    n = cfg.n_grid[-1]
    for (d, a, e), idx in _groups(table, ("d", "alpha", "eps")).items():
        ah, eh, gh = (A[f"est.{k}"][idx] for k in ("alpha", "eps", "gamma"))
        ok = (ah > 0) & (ah < 1) & (gh > 0)
        ehc = np.clip(eh, 1e-3, 0.499)
        lb_hat = np.where(ok, np.asarray(T.murphy_lower_bound(n, np.where(ok, ah, 0.5), ehc, np.where(ok, gh, 1.0))), np.nan)
        rows.append({"d": d, "alpha": a, "eps": e, "gamma": a * cfg.reward_scale, **_named("alpha_hat", _q(ah)),
                     **_named("eps_hat", _q(eh)), **_named("gamma_hat", _q(gh)),
                     "hard_audited": float(np.median(A["est.hard_audited"][idx])), "n": n,
                     "lower_bound": _f(T.murphy_lower_bound(n, a, e, a * cfg.reward_scale)),
                     **_named("lower_bound_hat", _q(np.nan_to_num(lb_hat, nan=0.0)))})
    return rows


def sequential_table(cfg, table, A):
    """SPRT (B.5) and abstention (B.11) at the largest budget vs the exact SPRT and Wald's formula."""
    rows = []
    K = len(cfg.n_grid) - 1
    for (a, e), idx in _groups(table, ("alpha", "eps")).items():
        sx = T.sprt_exact(e, cfg.sprt_delta)
        for p in ("sprt", "abstain"):
            g = lambda f: A[f"test.{p}.{f}"][idx][:, :, K].mean(axis=0)  # (2,)
            r = {"alpha": a, "eps": e, "protocol": p, "n_max": cfg.n_grid[-1], "stopped_frac": float(g("stopped").min()),
                 "minimax_err": float(g("err").max()), "labels_mean": float(g("labels").mean()),
                 "draws_mean": float(g("draws").mean())}
            if p == "sprt":
                r.update({"delta": cfg.sprt_delta, "exact_error": _f(sx["error"]), "exact_expected_hits": _f(sx["expected_hits"]),
                          "wald_B5_hits": _f(T.sprt_expected_hits_paper(e, cfg.sprt_delta)),
                          "expected_draws_routed": _f(sx["expected_hits"]) / a})
            else:
                hr = g("hard_rounds").mean()
                r.update({"band": cfg.abstain_band, "cost": cfg.abstain_cost,
                          "escalation_cost_per_hard_round": float(g("escalation_cost").mean() / hr),
                          "wrong_act_rate_per_hard_round": float(g("wrong_acts").mean() / hr),
                          "eps2_log_inv_delta": math.log(1 / (0.5 - cfg.abstain_band)) / e**2})
            rows.append(r)
    return rows
