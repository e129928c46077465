"""Figures of the "laws" section (matplotlib, Agg): one per law, predicted next to measured."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from murphyjax.experiments.laws.other_laws import q90  # noqa: E402
from murphyjax.experiments.laws.tables import MAPS_LABEL, MAPS_ORDER, finite_differences  # noqa: E402


def _band(ax, x, y, color, label, ls="-"):
    m, lo, hi = q90(y)
    ax.plot(x, m, ls, color=color, label=label)
    ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)


def _dots(ax, x, y, color, label):
    m, lo, hi = q90(y)
    ax.errorbar(x[::3], m[::3], yerr=[(m - lo)[::3], (hi - m)[::3]], fmt="o", ms=3, color=color, label=label, lw=0.8)


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def law_curves(cfg, res, path, exact_key, measured_key, pred_d, meas_d, ylabel, dylabel, title):
    """Top row: a quantity along lambda (exact: line and 90 % band; measured: dots). Bottom row: its
    derivative, predicted (closed form) vs measured (central differences of the simulated curve)."""
    lams = cfg.lams
    V = list(res)
    fig, axes = plt.subplots(2, len(V), figsize=(4 * len(V), 6.4), squeeze=False)
    for j, v in enumerate(V):
        r = res[v]
        ax = axes[0, j]
        _band(ax, lams, r[exact_key], "C0", "closed form (learned proxy)")
        _dots(ax, lams, r[measured_key], "C3", "measured (simulation)")
        if exact_key.replace("learned", "population") in r:
            ax.plot(lams, np.median(r[exact_key.replace("learned", "population")], 0), ":", color="k", label="population proxy")
        ax.set_title(f"{v}")
        ax.set_xlabel("λ")
        ax.set_ylabel(ylabel)
        ax = axes[1, j]
        _band(ax, lams, r[pred_d], "C0", "predicted derivative")
        _dots(ax, lams, finite_differences(r[meas_d], lams), "C3", "measured (finite differences)")
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_xlabel("λ")
        ax.set_ylabel(dylabel)
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def b4(cfg, res, thresholds, path):
    """B.4: the true value of (q_lambda, pi_lambda) per variant, closed form vs measured, with the thresholds predicted, observed and as written."""
    lams = cfg.lams
    V = list(res)
    fig, axes = plt.subplots(1, len(V), figsize=(4 * len(V), 3.4), squeeze=False)
    for j, v in enumerate(V):
        ax = axes[0, j]
        _band(ax, lams, res[v]["context.learned.value"], "C0", "V(λ) closed form")
        _dots(ax, lams, res[v]["context.measured.value"], "C3", "V(λ) measured")
        t = thresholds[v]
        for key, c, lab in (("lam_predicted", "C0", "λ* predicted (full derivative)"), ("lam_observed", "C3", "λ* observed"),
                            ("lam_b4_as_written", "k", "B.4 as written")):
            if np.isfinite(t[key]):
                ax.axvline(t[key], color=c, ls="--", lw=0.9, label=f"{lab}: {t[key]:.2f}")
        ax.set_title(v)
        ax.set_xlabel("λ")
        ax.set_ylabel("true value E_{q_λ}[U(X, π_λ(X))]")
        ax.legend(fontsize=6)
    fig.suptitle("B.4: the true value of (q_λ, π_λ) turns down after the threshold (median, 90 % band over seeds)", fontsize=10)
    _save(fig, path)


def maps(cfg, m, path):
    """MAPS (App. D): gap of r_hat, hard mass, drift along lambda, and gap vs sqrt(KL) for every intervention."""
    lams = cfg.lams
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for i, name in enumerate(MAPS_ORDER):
        c = f"C{i}"
        axes[0].plot(lams, np.median(m[f"{name}.gap"], 0), color=c, label=MAPS_LABEL[name])
        axes[0].plot(lams[::4], np.median(m[f"{name}.measured_gap"], 0)[::4], "o", ms=2.5, color=c)
        axes[1].plot(lams, np.median(m[f"{name}.rho"], 0), color=c)
        axes[2].plot(lams, np.median(m[f"{name}.drift"], 0), color=c)
        axes[3].plot(np.sqrt(np.median(m[f"{name}.kl"], 0)), np.median(m[f"{name}.gap"], 0), color=c)
    for ax, yl in zip(axes, ("gap of r̂: E[r̂ − U] (dots: measured)", "hard mass ρ_t(λ)", "drift ρ'_t(λ) = Cov_q(H, t)", "gap")):
        ax.set_ylabel(yl)
        ax.set_xlabel("λ")
    axes[2].axhline(0, color="grey", lw=0.6)
    axes[3].set_xlabel("√KL(q π ‖ μ π₀)")
    axes[0].legend(fontsize=6)
    fig.suptitle("MAPS on the directional bandit (App. D): gap, hard mass and drift along λ, median over seeds", fontsize=10)
    _save(fig, path)


def sweep(cfg, rows, path):
    """Penalty at beta*(tau, phi) (D.3): residual drift, hard-mass excess and gap at lambda_max against the flagger's phi, one line per tau."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for i, tau in enumerate(cfg.taus):
        sub = [r for r in rows if r["tau"] == tau]
        x = [r["phi"] for r in sub]
        for ax, key in zip(axes, ("max_abs_drift_lam_gt_0", "rho_excess_at_lam_max", "gap_at_lam_max")):
            ax.plot(x, [r[key] for r in sub], "o-", color=f"C{i}", label=f"τ = {tau}")
    for ax, yl in zip(axes, ("max_λ>0 |ρ'_t(λ)| (β* zeroes λ = 0 only)", "ρ_t(λ_max) − α", "gap at λ_max")):
        ax.set_xlabel("flagger false-positive rate ϕ")
        ax.set_ylabel(yl)
    axes[0].legend(fontsize=7)
    fig.suptitle("Flagger penalty at β*(τ, ϕ): the flagger's rates set the residual (median over seeds)", fontsize=10)
    _save(fig, path)


def trilemma(tri, path):
    """Each policy as (Σ_j regret_j, max_j regret_j): the region's lower-left corner against eq. (1)'s bounds."""
    clouds = tri["clouds"]
    rows = {r["environment"].split(" ")[0]: r for r in tri["rows"]}
    fig, axes = plt.subplots(1, len(clouds), figsize=(5.5 * len(clouds), 4.2), squeeze=False)
    for ax, (name, c) in zip(axes[0], clouds.items()):
        for key, col, lab, s in (("det", "C0", "random deterministic policies", 3), ("sto", "C2", "random stochastic policies", 3),
                                 ("support", "C3", "Pareto boundary (exact support points)", 12)):
            ax.scatter(c[key].sum(1), c[key].max(1), s=s, alpha=0.6 if key == "support" else 0.25, color=col, label=lab)
        r = rows[name]
        for x, col, ls, lab in ((c["paper"], "grey", "--", "eq. (1): α_S min m"), (c["proof"], "k", "--", "proof: 2 α_S min m"),
                                (r["min_sum_regret_exact"], "C3", ":", "exact min Σ regret")):
            ax.axvline(x, color=col, ls=ls, lw=1.2, label=f"{lab} = {x:.4f}")
        ax.axhline(r["min_max_regret_lp"], color="C1", ls=":", lw=1.2, label=f"min max_j regret (LP) = {r['min_max_regret_lp']:.4f}")
        ax.set_xscale("log")
        ax.set_xlim(c["paper"] / 2, None)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("Σ_j regret_j")
        ax.set_ylabel("max_j regret_j")
        ax.set_title(rows[name]["environment"], fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle("Eq. (1): the achievable regrets over all policies; no policy lies left of the bounds", fontsize=10)
    _save(fig, path)


def tails(res, path):
    """Heavy vs light tails (Kwa et al.): true and proxy gain vs KL for best-of-n and tilting, with the conditional reference curve."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, (error, r) in enumerate(res.items()):
        lab = "light N(0,1)" if error == "normal" else "heavy Student-t"
        for ax, m in zip(axes, ("bon", "tilt")):
            x = np.median(r[m]["kl"], 0)
            _band(ax, x, r[m]["true"] - r[m]["true"][:, :1], f"C{i}", f"{lab}: E[U] gain")
            ax.plot(x, np.median(r[m]["proxy"] - r[m]["proxy"][:, :1], 0), ":", color=f"C{i}", label=f"{lab}: proxy gain")
        axes[0].plot(np.median(r["bon"]["kl"], 0), np.median(r["limit"], 0), "--", color=f"C{i}", lw=0.8,
                     label=f"{lab}: E[U | P ≥ t_n] (Kwa et al.)")
    for ax, t in zip(axes, ("best-of-n", "tilting π ∝ π₀ exp(λP) (finite arms)")):
        ax.set_xlabel("KL(π ‖ π₀) [nats]")
        ax.set_ylabel("gain over π₀")
        ax.set_title(t, fontsize=9)
        ax.set_ylim(-0.5, 3.5)
        ax.legend(fontsize=6)
    fig.suptitle("Heavy- vs light-tailed proxy error: true utility under pressure (median, 90 % band)", fontsize=10)
    _save(fig, path)


def gao(curves, rows, path):
    """Each measured gain vs sqrt(KL) curve with both fitted Gao et al. forms (median coefficients)."""
    from murphyjax.theory import gao_bon, gao_rl

    fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.4), squeeze=False)
    for j, (name, (d, gain)) in enumerate(curves.items()):
        ax = axes[0, j]
        dm, gm = np.median(d, 0), np.median(gain, 0)
        ax.plot(dm, gm, "o", ms=3, color="k", label="measured (median)")
        for form, f, c in (("d(a - b d)", gao_bon, "C0"), ("d(a - b log d)", gao_rl, "C3")):
            r = next(x for x in rows if x["curve"] == name and x["form"] == form)
            ax.plot(dm, np.asarray(f(dm, r["a"], r["b"])), color=c, label=f"{form}: R²={r['r2']:.3f}")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("d = √KL")
        ax.legend(fontsize=6)
    axes[0, 0].set_ylabel("true-utility gain")
    fig.suptitle("Gao et al. forms fitted to measured true-utility vs √KL curves (coefficients: median over seeds)", fontsize=10)
    _save(fig, path)


def sharp(rows, path):
    """Exact Bayes errors (blind, flagged, routed) vs Theorem 1's bound and the Chernoff approximation, against n, per (alpha, eps)."""
    cells = sorted({(r["alpha"], r["eps"]) for r in rows})
    fig, axes = plt.subplots(1, len(cells), figsize=(4.3 * len(cells), 3.8), squeeze=False)
    for j, (a, e) in enumerate(cells):
        sub = [r for r in rows if r["alpha"] == a and r["eps"] == e]
        n = [r["n"] for r in sub]
        ax = axes[0, j]
        for key, c, lab in (("exact_all_blind", "C2", "exact: query everything (blind majority)"), ("exact_flagged", "C1", f"exact: flagged (τ={sub[0]['tau']}, ϕ={sub[0]['phi']})"),
                            ("exact_routed", "C0", "exact: routed / LR with hardness"), ("chernoff_approx", "C0", "Chernoff ½e^{−n·C}"),
                            ("paper_bound", "k", "Theorem 1 bound ¼e^{−nακ}")):
            ax.semilogy(n, [max(r[key], 1e-300) for r in sub], ":" if key == "chernoff_approx" else "-", color=c, label=lab)
        ax.set_xscale("log", base=2)
        ax.set_ylim(max(1e-40, min(r["paper_bound"] for r in sub) / 10), 1)
        ax.set_title(f"α={a}, ε={e}", fontsize=9)
        ax.set_xlabel("n (rounds)")
        ax.set_ylabel("P(ŵ ≠ w)")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("Exact Bayes errors of the two-world test vs Theorem 1's bound and the Chernoff approximation", fontsize=10)
    _save(fig, path)
