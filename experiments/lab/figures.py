"""Figures of the reproduction (matplotlib, Agg). Each function takes tidy rows and writes one PNG.

Bands are the 90 % intervals across seeds (5 % / 95 % quantiles) unless stated; a budget that is
never reached is drawn at the top edge with an upward triangle.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PROTO_STYLE = {
    "majority_all": ("tab:gray", "o"), "bayes_lr": ("tab:blue", "s"), "active_lr": ("tab:cyan", "v"),
    "oracle": ("tab:red", "D"), "flag_synth": ("tab:orange", "^"), "sprt": ("tab:purple", "P"),
    "abstain": ("tab:brown", "X"), "flag_bayes_score": ("tab:green", "<"), "flag_residual": ("tab:olive", ">"),
    "flag_disagreement": ("tab:pink", "*"),
}


def _sel(rows, **kw):
    return [r for r in rows if all(r[k] == v for k, v in kw.items())]


def _cells(rows):
    return sorted({(r["alpha"], r["eps"]) for r in rows})


def _grid(cells):
    alphas = sorted({a for a, _ in cells})
    epss = sorted({e for _, e in cells})
    fig, axes = plt.subplots(len(epss), len(alphas), figsize=(4.2 * len(alphas), 3.4 * len(epss)), squeeze=False)
    return fig, {(a, e): axes[epss.index(e)][alphas.index(a)] for a, e in cells}


def _lam_axis(ax, lams):
    ax.set_xticks(range(len(lams)))
    ax.set_xticklabels(["∞" if math.isinf(v) else f"{v:g}" for v in lams])
    ax.set_xlabel("λ (optimisation pressure)")


def bound(rows, path):
    """Empirical minimax sign error of every protocol vs the lower bound exp(-n alpha kappa)/4."""
    fig, ax_of = _grid(_cells(rows))
    for (a, e), ax in ax_of.items():
        sub = _sel(rows, alpha=a, eps=e)
        n = sorted({r["n"] for r in sub})
        lb = [_sel(sub, n=k)[0]["lower_bound_err"] for k in n]
        ax.plot(n, lb, "k--", lw=2, label="lower bound ¼exp(−nακ)")
        for p, (c, m) in PROTO_STYLE.items():
            s = sorted(_sel(sub, protocol=p), key=lambda r: r["n"])
            if not s:
                continue
            y = np.maximum([r["minimax_err"] for r in s], 1e-5)
            if s[0]["source"] == "simulated":
                lo = np.maximum([r["err_lo99"] for r in s], 1e-5)
                hi = np.maximum([r["err_hi99"] for r in s], 1e-5)
                yerr = np.abs([np.minimum(y - lo, y), hi - y])
                ax.errorbar([r["n"] for r in s], y, yerr=yerr, color=c, marker=m, ls="none", ms=4, label=p)
                if not math.isnan(s[0]["exact_err"]):
                    ax.plot([r["n"] for r in s], np.maximum([r["exact_err"] for r in s], 1e-5), color=c, lw=1)
            else:
                ax.plot([r["n"] for r in s], y, color=c, marker=m, ms=3, lw=1, label=p + " (exact)")
        ax.set(xscale="log", yscale="log", ylim=(1e-5, 1), title=f"α={a}, ε={e}", xlabel="n (draws)",
               ylabel="minimax P(ŵ ≠ w)")
    ax_of[next(iter(ax_of))].legend(fontsize=6, loc="lower left")
    fig.suptitle("Sign error of every protocol vs Theorem 1 (markers: simulated, 99% Wilson; lines: exact)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def kl(rows, path):
    """Measured transcript KL / (n alpha kappa) per protocol (Theorem 1's chain-rule bound is 1)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for p, (c, m) in PROTO_STYLE.items():
        s = _sel(rows, protocol=p)
        if s:
            axes[0].scatter([r["n"] * r["alpha"] for r in s], [r["kl_over_bound"] for r in s], color=c, marker=m, s=10, label=p)
            axes[1].scatter([r["n_alpha"] for r in s], [r["hits"] / r["n_alpha"] for r in s], color=c, marker=m, s=10)
    axes[0].axhline(1, color="k", ls="--", label="bound n α κ(ε)")
    axes[0].set(xscale="log", xlabel="n α", ylabel="transcript KL / (n α κ(ε))", title="Transcript KL (Lemma 4 + Lemma 1)")
    axes[1].axhline(1, color="k", ls="--")
    axes[1].set(xscale="log", xlabel="n α", ylabel="E[queried hits] / (n α)", title="Lemma 2: E[hits] ≤ n α")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def oracle_vs_free(rows, path):
    """Oracle routing vs oracle-free learners, error vs n alpha eps^2 (collapses Theorem 2's rate)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), sharey=True)
    groups = [("oracle (routes by h)", ["oracle", "sprt"]), ("oracle-free, x-only Bayes test", ["bayes_lr", "active_lr"]),
              ("oracle-free, majority of all labels", ["majority_all"])]
    for ax, (title, ps) in zip(axes, groups):
        x = np.logspace(-2, 1.5, 50)
        ax.plot(x, np.exp(-2 * x), "k:", label="exp(−2 n α ε²) (Hoeffding, Thm 2)")
        for (a, e) in _cells(rows):
            for p in ps:
                s = sorted(_sel(rows, alpha=a, eps=e, protocol=p), key=lambda r: r["n"])
                c, m = PROTO_STYLE[p]
                ax.plot([r["n"] * a * e * e for r in s], np.maximum([r["minimax_err"] for r in s], 1e-5), marker=m,
                        color=c, alpha=0.35 + 0.65 * a / 0.1, ms=3, lw=0.8, label=f"{p} α={a} ε={e}")
        ax.set(xscale="log", yscale="log", ylim=(1e-5, 1), xlabel="n α ε²", title=title)
    axes[0].set_ylabel("minimax P(ŵ ≠ w)")
    axes[0].legend(fontsize=5, ncol=2)
    fig.suptitle("Oracle vs oracle-free (both are exp(−Θ(n α ε²)) in draws; the paper proves no separation, note 9.4)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def d1(rows, path, d, n):
    """D1: value of pi_lambda (action tilt) and of the greedy proxy policy under q_lambda (context tilt)."""
    sub = _sel(rows, d=d, n=n)
    lams = sorted({r["lam"] for r in sub})
    fig, axes = plt.subplots(1, 5, figsize=(21, 3.9))
    x = np.arange(len(lams))
    for (a, e) in _cells(sub):
        s = sorted(_sel(sub, alpha=a, eps=e), key=lambda r: r["lam"])
        lab = f"α={a} ε={e}"
        ls = "-" if e == max(ee for _, ee in _cells(sub)) else "--"
        for ax, f, scale in zip(axes, ("V", "V_hat", "G_hard"), (1, 1, a)):
            y = np.array([r[f] for r in s]) / scale
            line, = ax.plot(x, y, ls, marker=".", label=lab)
            ax.fill_between(x, np.array([r[f + "_q05"] for r in s]) / scale, np.array([r[f + "_q95"] for r in s]) / scale,
                            color=line.get_color(), alpha=0.12)
        fin = [r for r in s if not math.isinf(r["lam"])]
        xf = np.arange(len(fin))
        line, = axes[3].plot(xf, [r["rho_tilt"] for r in fin], ls, marker=".", label=lab)
        axes[3].scatter(xf, [r["rho_tilt_mc"] for r in fin], color=line.get_color(), marker="x", s=12)
        axes[4].plot(xf, [r["V_dist"] for r in fin], ls, marker=".", color=line.get_color())
    titles = ("true value V₊(π_λ), π_λ = σ(λŝ)", "proxy value V̂(π_λ) (logit units)", "G_hard(λ)/α: regret on hard contexts",
              "ρ(λ) = q_λ(X_hard) (line exact, × Monte Carlo)", "Prop. 3: V₊ of the greedy proxy policy under q_λ")
    for i, (ax, t) in enumerate(zip(axes, titles)):
        _lam_axis(ax, lams if i < 3 else [v for v in lams if not math.isinf(v)])
        ax.set_title(t, fontsize=9)
    axes[3].set_yscale("log")
    axes[0].legend(fontsize=6)
    fig.suptitle(f"D1 — gap vs optimisation pressure (oracle-free active learner, d={d}, n={n}; medians, 90% bands)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def d2(rows, path, d, n):
    """D2: G_rho(lambda) under the shifted law, one panel per (alpha, eps)."""
    sub = _sel(rows, d=d, n=n)
    fig, ax_of = _grid(_cells(sub))
    lams = sorted({r["lam"] for r in sub})
    x = np.arange(len(lams))
    for (a, e), ax in ax_of.items():
        for rho in sorted({r["rho"] for r in sub}):
            s = sorted(_sel(sub, alpha=a, eps=e, rho=rho), key=lambda r: r["lam"])
            line, = ax.plot(x, [r["G"] for r in s], marker=".", label=f"ρ={rho} (α_ρ={(1 + rho) * a:.3g})")
            ax.fill_between(x, [r["G_q05"] for r in s], [r["G_q95"] for r in s], color=line.get_color(), alpha=0.12)
        _lam_axis(ax, lams)
        ax.set(title=f"α={a}, ε={e}", ylabel="G_ρ(λ)", yscale="log")
        ax.legend(fontsize=6)
    fig.suptitle(f"D2 — gap under shift μ_ρ (d={d}, n={n}; medians, 90% bands)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def d3(two_point, logistic_reach, path, d, n_max):
    """D3: draws needed to reach a value gap eta, with and without routing, overlaid with Q(eta)."""
    cells = _cells(two_point)
    fig, axes = plt.subplots(2, len(cells), figsize=(3.3 * len(cells), 6.8), squeeze=False)
    styles = {"oracle h": "tab:red", "no routing (majority of all labels)": "tab:gray", "synthetic (tau, phi)": "tab:orange",
              "bayes_score flagger": "tab:green", "residual flagger": "tab:olive", "disagreement flagger": "tab:pink",
              "simulated bayes_lr": "tab:blue"}
    top = 1e9
    for j, (a, e) in enumerate(cells):
        ax = axes[0][j]
        for name, c in styles.items():
            s = sorted(_sel(two_point, alpha=a, eps=e, flagger=name), key=lambda r: r["eta_over_gamma"])
            if not s:
                continue
            y = np.array([r["draws_exact"] for r in s], float)
            xs = np.array([r["eta_over_gamma"] for r in s])
            if name.startswith("simulated"):  # grid-limited: only the targets reached within the grid
                ax.scatter(xs[np.isfinite(y)], y[np.isfinite(y)], marker="s", s=18, color=c, label=name + " (first grid n)")
            else:
                ax.plot(xs, np.where(np.isfinite(y), y, top), marker="o", ms=3, color=c, lw=1, label=name)
        s = sorted(_sel(two_point, alpha=a, eps=e, flagger="oracle h"), key=lambda r: r["eta_over_gamma"])
        ax.plot([r["eta_over_gamma"] for r in s], [r["Q_theorem2_hoeffding"] for r in s], "k--", label="Q(η) Thm 2")
        ax.set(xscale="log", yscale="log", title=f"two-point  α={a} ε={e}", xlabel="η/γ", ylim=(10, 2 * top))
        ax = axes[1][j]
        for name, c in (("no routing (active, oracle-free)", "tab:gray"), ("routed by oracle h", "tab:red"),
                        ("routed by residual flagger", "tab:olive")):
            s = sorted(_sel(logistic_reach, alpha=a, eps=e, learner=name, target="G_hard", d=d), key=lambda r: r["eta_over_gamma"])
            y = np.array([r["draws"] for r in s], float)
            ax.plot([r["eta_over_gamma"] for r in s], np.where(np.isfinite(y), y, 2 * n_max), marker="o", ms=3, color=c, label=name)
            ax.scatter([r["eta_over_gamma"] for r, v in zip(s, y) if not np.isfinite(v)],
                       [2 * n_max] * int((~np.isfinite(y)).sum()), marker="^", color=c, s=40)
        ax.plot([r["eta_over_gamma"] for r in s], [r["Q_theorem2"] for r in s], "k--", label="Q(η) Thm 2")
        ax.set(xscale="log", yscale="log", title=f"logistic learner d={d}", xlabel="η/γ  (target: G_hard ≤ η)",
               ylim=(10, 4 * n_max))
    axes[0][0].set_ylabel("draws to reach gap ≤ η (exact)")
    axes[1][0].set_ylabel("draws (median over seeds)")
    axes[0][0].legend(fontsize=5)
    axes[1][0].legend(fontsize=5)
    fig.suptitle("D3 — query routing (top: Theorem 2's two-point problem, exact; bottom: Section 3 logistic learner; ▲ = not reached)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
