"""Findings read off the tables of a run: every sentence carries the numbers it rests on."""

from __future__ import annotations

import math

import numpy as np


def _sel(rows, **kw):
    return [r for r in rows if all(r[k] == v for k, v in kw.items())]


def setup(cfg):
    return [
        "Contexts: x ~ (1−α)N(0, I_d) + αN(μ_h, I_d) with latent hardness z (P(z=1) = α); θ ⊥ υ ⊥ ξ random unit "
        f"vectors; μ_h = {cfg.hard_mean[0]}θ + {cfg.hard_mean[1]}υ + {cfg.hard_mean[2]}ξ (hard contexts are visible along ξ and "
        "1 sd out along θ).",
        f"Rewards r_w(x, a₁) = ½ + sΔ_w(x)/2, r_w(x, a₀) = ½ − sΔ_w(x)/2, s = {cfg.reward_scale}; Δ = sign(θᵀx) on easy and "
        "w·sign(υᵀx) on hard contexts; hence γ = α·s exactly (note 9.8).",
        "Labels relative to the reference action π⁺(x) (note 9.1): P_w(Z=1 | hard) = ½ + wε. Testing problem: easy labels "
        f"symmetric (Theorem 1's channel). Logistic learner: easy labels right w.p. ½ + {cfg.easy_eps}.",
        "Counting (note 9.3): n is the number of draws (rounds); labels are counted separately everywhere.",
        f"Logistic preference model: MAP with ridge {cfg.ridge}, features [x, 1], Newton steps {cfg.newton_iters} (first/warm); "
        f"π_λ(a₁|x) = σ(λŝ(x)). Oracle-free learner: margin sampling (asks when |ŝ| is below the {cfg.active_frac} quantile), "
        "refit at every n of the nested grid.",
        f"Flaggers keep {cfg.keep_factor}·α of contexts (threshold from the audit set of {cfg.audit_size}); residual flagger: "
        f"logistic regression of 'the proxy at n={cfg.n_grid[cfg.ref_index]} disagrees with the adjudicated best action'; "
        "disagreement flagger: |ŝ_A − ŝ_B| of two models on disjoint coordinate halves; Bayes score: the exact P(hard | x).",
        f"Evaluation: {cfg.eval_size} easy + {cfg.eval_size} hard samples per seed (stratified, common across λ, n, ρ). "
        f"SPRT δ = {cfg.sprt_delta}; abstention band ±{cfg.abstain_band}, cost {cfg.abstain_cost}; synthetic flagger "
        f"(τ, ϕ) = ({cfg.synth_tau}, {cfg.synth_phi}).",
    ]


def _first_n(rows, alpha, eps, protocol, target, key="minimax_err"):
    s = sorted(_sel(rows, alpha=alpha, eps=eps, protocol=protocol), key=lambda r: r["n"])
    for r in s:
        if r[key] <= target:
            return r["n"]
    return math.inf


def oracle_vs_free(cfg, T):
    """Side-by-side statements on oracle routing vs oracle-free learners (paper note 9.4)."""
    rows = T["bound_vs_empirical"]
    out = []
    for a in cfg.alphas:
        for e in cfg.epss:
            from murphyjax.bandits import exact

            target = 0.1
            n_or = float(exact.draws_to_reach(target, a, e, 1.0, 0.0))
            n_maj = float(exact.draws_to_reach(target, a, e, 1.0, 1.0))
            n_lr = _first_n(rows, a, e, "bayes_lr", target)
            out.append(f"α={a}, ε={e}: draws to P(err) ≤ {target}: oracle routing {n_or:.0f} (exact, "
                       f"{n_or * a:.0f} labels), x-only Bayes test ≤ {n_lr:g} (first grid n, every draw labelled), "
                       f"majority of all labels {n_maj:.0f} (exact); ratio majority/oracle = {n_maj / n_or:.1f} "
                       f"(≈ 1/α = {1 / a:.0f} predicted by exp(−2nα²ε²) vs exp(−2nαε²)).")
    out.append("Both oracle and oracle-free learners fall like exp(−Θ(n α ε²)) in draws; Theorem 1 bounds both. What the "
               "oracle buys is (i) labels: ~nα instead of n, and (ii) against the majority-of-all-labels learner a factor "
               "≈ 1/α in draws. Against the x-only Bayes test, which already weights labels by P(hard | x), the gap in draws "
               "is only the information about z that x does not carry. The paper proves no separation (note 9.4); this "
               "is what was measured.")
    return out


def summary(cfg, T):
    out = []
    br = T["bound_vs_empirical"]
    viol = [r for r in br if not r["holds"]]
    best = {}
    for r in br:
        if r["source"] == "simulated" and 0.5 <= r["n_alpha_kappa"] <= 2 and not r["protocol"].startswith("logistic"):
            k = (r["alpha"], r["eps"], r["n"])
            best[k] = min(best.get(k, math.inf), r["minimax_err"] / r["lower_bound_err"])
    ratio = list(best.values())
    out.append(f"Theorem 1's lower bound holds at every one of the {len(br)} (cell, protocol, n) points checked "
               f"({len(viol)} violations at 99 % confidence). It is loose: where nακ is between 0.5 and 2 the best "
               f"protocol's minimax error is {min(ratio):.1f}–{max(ratio):.1f}× the bound ¼exp(−nακ) (and the gap "
               "grows with n: Bretagnolle–Huber puts the per-hit KL κ(ε) = 4ε·atanh(2ε) ≈ 8ε² in the exponent, while "
               "the best test's error decays at the Chernoff information −½log(1 − 4ε²) ≈ 2ε² per hit, a factor ≈ 4 "
               "smaller)." if ratio else
               f"Theorem 1's lower bound checked at {len(br)} points, {len(viol)} violations.")
    kl = T["transcript_kl"]
    ok = all(r["kl_holds"] for r in kl) and all(r["lemma2_holds"] for r in kl)
    orr = [r["kl_over_bound"] for r in kl if r["protocol"] == "oracle"]
    xo = [r["kl_over_bound"] for r in kl if r["protocol"] == "bayes_lr"]
    out.append(f"Transcript KL ≤ nακ(ε) and E[hits] ≤ nα (Lemma 2) hold {'at every' if ok else 'NOT at every'} grid point "
               "(within 3 Monte Carlo sd of the hit count; oracle routing is the equality case). "
               f"Oracle routing attains the bound (KL/nακ = {np.median(orr):.3f}, median); learners that see x only "
               f"get {np.median(xo):.3f} of it because x does not reveal z.")
    d1 = T["d1"]
    d0, n = cfg.ds[0], cfg.n_grid[-1]
    lams = [l for l in cfg.lam_grid]
    for a in cfg.alphas:
        e = max(cfg.epss)
        s = sorted(_sel(d1, d=d0, n=n, alpha=a, eps=e), key=lambda r: r["lam"])
        V = [r["V"] for r in s]
        Vh = [r["V_hat"] for r in s]
        gh = s[-1]["G_hard"] / a
        fin = [r for r in s if not math.isinf(r["lam"])]
        lmax = max(l for l in lams if not math.isinf(l))
        mono = all(V[i + 1] >= V[i] - 1e-6 for i in range(len(V) - 1))
        out.append(f"D1 (d={d0}, n={n}, α={a}, ε={e}): the proxy value V̂(π_λ) rises {Vh[0]:.3f} → {Vh[-1]:.3f}; the true "
                   f"value V₊(π_λ) {'rises monotonically and plateaus' if mono else 'is not monotone'} ({V[0]:.3f} → "
                   f"{V[-1]:.3f} at λ = ∞, short of V₊(π⁺) = {s[0]['V_star'] if 'V_star' in s[0] else 1:.3f}) because on hard "
                   f"contexts the greedy policy is right only {1 - gh:.2f} of the time (G_hard/α = {gh:.2f}): it plateaus, it "
                   f"does not fall. Tilting the contexts instead (Section 3.4): ρ(λ) = {fin[0]['rho_tilt']:.3f} → "
                   f"{fin[-1]['rho_tilt']:.3f} at λ = {lmax:g}, and the true value of the greedy proxy policy under q_λ "
                   f"falls {fin[0]['V_dist']:.3f} → {fin[-1]['V_dist']:.3f} while its proxy value rises "
                   f"{fin[0]['V_hat_dist']:.2f} → {fin[-1]['V_hat_dist']:.2f} (Proposition 3's pattern).")
    d2 = T["d2"]
    for a in cfg.alphas:
        e = max(cfg.epss)
        g = {r["rho"]: r["G"] for r in _sel(d2, d=d0, n=n, alpha=a, eps=e) if math.isinf(r["lam"])}
        out.append(f"D2 (α={a}, ε={e}): the greedy gap grows with the shift, G_ρ = "
                   + ", ".join(f"{g[r]:.4f} (ρ={r})" for r in sorted(g)) + ".")
    tp = T["d3_two_point"]
    for a in cfg.alphas:
        for e in cfg.epss:
            f = cfg.eta_fracs[len(cfg.eta_fracs) // 2]
            o = _sel(tp, alpha=a, eps=e, flagger="oracle h", eta_over_gamma=f)[0]
            rf = _sel(tp, alpha=a, eps=e, flagger="residual flagger", eta_over_gamma=f)[0]
            out.append(f"D3 two-point (α={a}, ε={e}, η = {f}γ): exact oracle routing needs {o['draws_exact']:.0f} draws vs "
                       f"Q(η) = {o['Q_theorem2_hoeffding']:.0f} from Hoeffding ({o['Q_theorem2_hoeffding'] / o['draws_exact']:.1f}× "
                       f"conservative); the learned residual flagger (τ={rf['tau_median']:.2f}, ϕ={rf['phi_median']:.3f}) needs "
                       f"{rf['draws_exact']:.0f} (Theorem 3's T/(ατ) = {rf['Q_theorem3_T_over_alpha_tau']:.0f}, with dilution "
                       f"{rf['Q_diluted']:.0f}).")
    lr = [r for r in T["d3_logistic_reach"] if r["target"] == "G_hard"]
    for name in sorted({r["learner"] for r in lr}):
        rs = [r for r in lr if r["learner"] == name]
        ok = [r for r in rs if math.isfinite(r["draws"])]
        deepest = min((r["eta_over_gamma"] for r in ok), default=None)
        out.append(f"D3 logistic learner, {name}: G_hard ≤ η reached (median over seeds) in {len(ok)} of {len(rs)} "
                   f"(d, cell, η) combinations within n ≤ {n}" + (f"; the smallest η reached is {deepest}γ." if ok else "."))
    out.append("The logistic learner must learn the hard-context direction υ in d dimensions from labels that are "
               "right w.p. ½ + ε, so even with the oracle it needs of the order of d/ε² hard labels, far more than "
               "Theorem 2's log(γ/η)/(2ε²) for the two-point problem; without routing it stays at G_hard ≈ α/2.")
    est = T["estimates"]
    err_a = [abs(r["alpha_hat"] - r["alpha"]) / r["alpha"] for r in est]
    err_e = [abs(r["eps_hat"] - r["eps"]) / r["eps"] for r in est]
    out.append(f"Section 5.6 estimates from an audit of {cfg.audit_size} contexts: median relative error of α̂ "
               f"{np.median(err_a):.2f}, of ε̂ {np.median(err_e):.2f} (ε is estimated from only ≈ α·{cfg.audit_size} "
               "hard audited labels: with small α the plug-in bound is unreliable).")
    sq = [r for r in T["sequential"] if r["protocol"] == "sprt"]
    out.append("SPRT (B.5): measured labels to decision vs the exact gambler's-ruin value: " + "; ".join(
        f"α={r['alpha']} ε={r['eps']}: {r['labels_mean']:.1f} vs {r['exact_expected_hits']:.1f} (Wald's B.5 formula "
        f"{r['wald_B5_hits']:.1f})" for r in sq if r["stopped_frac"] > 0.99) + ".")
    return out
