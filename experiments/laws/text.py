"""The words of the "laws" section: setup, one figure and one table per law, and what they show."""

from __future__ import annotations

import math

from murphyjax.experiments.common.report import table


def _f(x, spec=".3g"):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def blocks(cfg, T, fig, seconds):
    """Report blocks of the section: intro, findings, setup, then one figure and table per law."""
    B = [("h1", "The laws where they bind: directional feedback bias, MAPS, the trilemma, tails, sharper bounds"),
         ("p", f"{cfg.seeds} seeds; every number is a median over seeds with its 90 % interval (q05, q95). 'Predicted' = the "
               "closed forms of murphyjax.theory (and bandits.two_tilt) evaluated exactly on the learned proxy; 'population' = the same "
               "on the proxy's infinite-data limit (a prediction made before any data); 'measured' = simulation: contexts drawn from "
               "q_λ, actions from π_λ, averaged over "
               f"{cfg.mc_samples} draws per λ with common random numbers, derivatives by central differences. Section time {seconds:.0f} s."),
         ("h2", "Findings")]
    B.append(("ul", findings(cfg, T)))
    B += setup(cfg)
    B += _drift(cfg, T, fig) + _b4(cfg, T, fig) + _b10(cfg, T, fig) + _gap(cfg, T, fig) + _maps(cfg, T, fig)
    B += _trilemma(T, fig) + _tails(cfg, T, fig) + _gao(T, fig) + _sharp(T, fig)
    return B


def setup(cfg):
    """The directional-bias bandit and the two tilts, described with the config's numbers."""
    return [("h2", "The directional-bias bandit (murphyjax.bandits.directional)"), ("ul", [
        f"K = {cfg.n_contexts} contexts in R^{cfg.d}, μ uniform, α = {cfg.alpha} of them hard (exact); two actions, a₁ = the 'hacked' action "
        "(the analogue of agreement or length).",
        f"True utility: on easy contexts U(x, a₁) − U(x, a₀) = Δ(x) with |Δ| ∈ [{cfg.easy_margin}, 1); on hard contexts U(x, a₁) = "
        f"{cfg.u_hack}, U(x, a₀) = {1 - cfg.u_hack}: the hacked action is bad there.",
        f"Channel: easy annotators Bradley-Terry on the truth, P(a₁ ≻ a₀) = σ({cfg.sharpness} Δ(x)); on hard contexts annotators prefer a₁ "
        f"w.p. 1/2 + ε whatever the truth (ε = {cfg.eps}). Variants: 'symmetric' (bias of the same size toward a random action per hard "
        f"context: it points nowhere), 'varying' (ε(x) = ε(1 + {cfg.spread} tanh(υᵀx)), B.1), 'correlated' (hard contexts drawn with "
        f"weights exp({cfg.hard_corr} θᵀx): where the proxy is high, contexts are more often hard).",
        f"Proxy: logistic preference model on [x, 1, per-context effect] fitted to n = {cfg.n_labels} labels (≈{cfg.n_labels // cfg.n_contexts} "
        "per context), ŝ = advantage of a₁ in utility units, r̂(x, a) = (1 ± ŝ)/2 (centred like U, so the gap of π₀ is 0).",
        "Two tilts (paper note 9.13): the context tilt q_λ ∝ μ exp(λŝ) together with π_λ(a₁|x) = σ(λŝ(x)) (the system of B.4), and the "
        "policy tilt π_β ∝ π₀ exp(β r̂) with contexts from μ (the v1 Alignment Gap; for two actions π_β(a₁|x) = σ(βŝ(x)))."])]


def _span(r, k, spec=".3g"):
    return f"{_f(r[k], spec)} [{_f(r[k + '_q05'], spec)}, {_f(r[k + '_q95'], spec)}]"


def _worst(rows, a, b, scale):
    """Largest |a - b| over rows, relative to the largest |b| (how close predicted and measured are)."""
    d = [abs(r[a] - r[b]) for r in rows if _ok(r[a]) and _ok(r[b])]
    return (max(d) if d else math.nan), max((abs(r[scale]) for r in rows if _ok(r[scale])), default=math.nan)


def _ok(x):
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def findings(cfg, T):
    """The section's findings, every statement computed from the tables (nothing asserted in advance)."""
    out = []
    c0 = {r["variant"]: r for r in T["laws_cov0"]}
    pos = [v for v, r in c0.items() if r["cov_learned_q05"] > 0]
    zero = [v for v, r in c0.items() if r["cov_learned_q05"] <= 0 <= r["cov_learned_q95"]]
    out.append("Cov_μ(H, ŝ) at λ = 0 (median [q05, q95] over seeds): " + ", ".join(f"{v} {_span(r, 'cov_learned', '.4f')}" for v, r in c0.items())
               + f". The 90 % interval is above 0 for {', '.join(pos) or 'no variant'} (Props 1-2 bind: the hard mass drifts up)"
               + (f" and contains 0 for {', '.join(zero)} (no systematic drift)" if zero else "") + ".")
    ctx = [r for r in T["laws_drift"] if r["path"] == "context"]
    pol = [r for r in T["laws_drift"] if r["path"] == "policy"]
    (dc, sc), (dp, sp) = _worst(ctx, "drift_predicted", "drift_measured", "drift_predicted"), _worst(pol, "drift_predicted", "drift_measured", "drift_predicted")
    out.append(f"Hard-mass derivative, predicted (Cov_{{q_λ}}(H, ŝ)) vs measured (finite differences of the simulation) at λ ∈ "
               f"{sorted({r['lam'] for r in ctx})}: largest median difference {_f(dc)} (context tilt; derivatives up to {_f(sc)}) and "
               f"{_f(dp)} (policy tilt; up to {_f(sp)}).")
    db, sb = _worst(T["laws_b10"], "slope_b10", "slope_measured", "slope_b10")
    out.append(f"Prop. 6 / B.10: the slope of the greedy proxy policy's proxy-true divergence, predicted Cov_q(r̂ − U, ŝ), differs "
               f"from the measured one by at most {_f(db)} (slopes up to {_f(sb)}); Δ_PV at the largest shown λ: "
               + ", ".join(f"{r['variant']} {_f(r['dpv_exact'])}" for r in T["laws_b10"] if r["lam"] == max(x["lam"] for x in T["laws_b10"])) + ".")
    b4 = {r["variant"]: r for r in T["laws_b4"]}
    parts = []
    for v, r in b4.items():
        falls = _ok(r["lam_predicted"]) and r["value_at_lam_max"] < r["value_peak"]
        parts.append(f"{v}: λ* {_f(r['lam_predicted'])} predicted vs {_f(r['lam_observed'])} observed (largest seed-wise difference "
                     f"{_f(r['max_abs_pred_minus_obs'])}, grid step {_f(r['grid_step'])}); V rises from {_f(r['value_at_0'])} to {_f(r['value_peak'])} "
                     + (f"then falls to {_f(r['value_at_lam_max'])} at λ_max" if falls else "and does not turn down on the grid (B.4 does not bind)"))
    as_written0 = [v for v, r in b4.items() if _ok(r["lam_b4_as_written"]) and r["lam_b4_as_written"] < 1e-9]
    out.append("B.4 threshold (the true value of (q_λ, π_λ) turns down): " + "; ".join(parts) + "."
               + (f" B.4 as written (ρ'(E_h − E_e) alone, paper note 9.10) puts the downturn at λ = 0 for {', '.join(as_written0)}, "
                  "although the true value first rises." if as_written0 else ""))
    g = T["laws_gap"]
    dg, sg = _worst(g, "gap_closed_form", "gap_measured", "gap_closed_form")
    pk = {r["variant"]: r for r in T["laws_peak"]}
    inside = sum(r["seeds_peak_inside_grid"] for r in pk.values())
    total = sum(r["seeds"] for r in pk.values())
    gains = ", ".join(f"{v} {_f(r['true_gain_at_beta_max'])}" for v, r in pk.items())
    gaps = ", ".join(f"{v} {_f(r['gap_at_beta_max'])}" for v, r in pk.items())
    out.append(f"v1 Alignment Gap of π_β (policy tilt alone): closed form vs measured differ by at most {_f(dg)} (gaps up to {_f(sg)}); "
               f"gap at β_max: {gaps}. True utility peaks inside the grid in {inside}/{total} (variant, seed) pairs; "
               f"E[U] gain at β_max: {gains}"
               + (". With the policy tilt alone the true utility does not fall on this grid (each hard context costs a bounded amount); "
                  "the downturn of B.4 needs the context tilt too." if inside == 0 else "."))
    out.append(_maps_finding(T["laws_maps"]))
    sw = T["laws_flagger_sweep"]
    if sw:
        best, worst = min(sw, key=lambda r: r["gap_at_lam_max"]), max(sw, key=lambda r: r["gap_at_lam_max"])
        out.append(f"Flagger sweep (penalty at β*(τ, ϕ), which zeroes ρ'_t(0) for every flagger): gap at λ_max ranges from {_f(best['gap_at_lam_max'])} "
                   f"(τ={best['tau']}, ϕ={best['phi']}) to {_f(worst['gap_at_lam_max'])} (τ={worst['tau']}, ϕ={worst['phi']}); the residual drift "
                   f"max|ρ'_t(λ>0)| stays between {_f(min(r['max_abs_drift_lam_gt_0'] for r in sw))} and {_f(max(r['max_abs_drift_lam_gt_0'] for r in sw))} (D.6).")
    tri = T["laws_trilemma"]
    out.append("Eq. (1): min over all policies of Σ_j regret_j = " + "; ".join(
        f"{r['environment'].split(' ')[0]} {_f(r['min_sum_regret_exact'], '.4f')} vs the paper's bound {_f(r['bound_eq1_paper'], '.4f')} and the "
        f"proof's {_f(r['bound_proof'], '.4f')} (k = {r['bound_proof_k']}; ratio {_f(r['tightness_proof'], '.3f')})" for r in tri)
        + (". Both bounds hold on every environment" if all(r["eq1_holds"] and r["proof_bound_holds"] for r in tri) else ". A BOUND FAILS (see table)")
        + ("; the proof's constant is attained (ratio 1)." if any(abs(r["tightness_proof"] - 1) < 1e-9 for r in tri) else "."))
    out.append(_tails_finding(T["laws_tails"]))
    gr = [r for r in T["laws_gao"] if r["better_fit"]]
    other = {(r["curve"]): r for r in T["laws_gao"] if not r["better_fit"]}
    out.append("Gao et al. forms (better median R² per curve, coefficients a, b): " + "; ".join(
        f"{r['curve']}: {r['form']}, a={_f(r['a'])}, b={_f(r['b'])}, R² {_f(r['r2'], '.3f')}"
        + (" (the other form within 0.01: the data do not separate them)" if abs(r["r2"] - other[r["curve"]]["r2"]) < 0.01 else "")
        for r in gr) + ".")
    lo = T["laws_looseness"]
    holds = all(r["bound_holds"] for r in T["laws_sharp"])
    out.append(f"Theorem 1's bound vs the exact Bayes error: the bound {'holds at every n' if holds else 'FAILS somewhere (see table)'}; " + "; ".join(
        f"α={r['alpha']}, ε={r['eps']}: exponent ακ is {_f(r['exponent_ratio'], '.2f')}x the achievable one, the bound is 10x below the exact "
        f"error from n = {_f(r['n_loose_10x'], '.0f')} and {_f(r['loose_factor_at_n_max'], '.3g')}x below at n = {r['n_max']}" for r in lo) + ".")
    out.append(_dilution_finding(T["laws_dilution"]))
    if T.get("laws_lab_vs_exact"):
        rows = T["laws_lab_vs_exact"]
        out.append(f"Lab simulations vs exact Bayes errors: {sum(r['within_interval'] for r in rows)}/{len(rows)} (cell, protocol, n) points "
                   f"inside the 99 % interval; theory.bayes_error and bandits.exact agree on {sum(r['implementations_agree'] for r in rows)}/{len(rows)}.")
    return out


_NO_H = ("temperature", "τ = ϕ")


def _dilution_finding(rows):
    parts, over = [], []
    for a, e in sorted({(r["alpha"], r["eps"]) for r in rows}):
        sub = sorted((r for r in rows if r["alpha"] == a and r["eps"] == e), key=lambda r: r["phi"])
        r0, r1 = sub[0], sub[-1]
        parts.append(f"α={a}, ε={e}: {_f(r1['Q_exact'] / r0['Q_exact'], '.2f')}x more draws at ϕ={r1['phi']} than at ϕ={r0['phi']} "
                     f"(vote accuracy {_f(r1['vote_accuracy'], '.4f')} instead of {_f(r0['vote_accuracy'], '.4f')})")
        over += [r for r in sub if r["exact_over_theorem3"] > 1]
    return (f"Flagger dilution (τ = {rows[0]['tau']}): Theorem 3's count T/(ατ) does not depend on the false-positive rate ϕ, the exact count "
            "does: " + "; ".join(parts) + ". Theorem 3's Hoeffding count is conservative at ϕ = 0 (exact/Theorem 3 = "
            + ", ".join(_f(r["exact_over_theorem3"], ".2f") for r in rows if r["phi"] == min(x["phi"] for x in rows))
            + ("), and the exact count exceeds it at " + ", ".join(f"(α={r['alpha']}, ε={r['eps']}, ϕ={r['phi']})" for r in over)
               if over else "), and that slack still covers every ϕ in the table") + ".")


def _maps_finding(rows):
    none = rows[0]
    by = {r["intervention"]: r for r in rows}
    desc = "; ".join(f"{k.split(' (')[0]}: {_f(r['line_slope'])} / {_f(r['line_intercept'])}" for k, r in by.items())
    no_h = [r for r in rows[1:] if any(s in r["intervention"] for s in _NO_H)]
    with_h = [r for r in rows[1:] if r not in no_h]
    best = min(rows, key=lambda r: r["gap_at_lam_max"])
    txt = (f"MAPS, gap line slope / intercept over the λ grid (gap of the learned proxy r̂ under the shaped system): {desc}. "
           f"At matched pressure (KL {_f(none['kl_ref'])} nats) the gap is {_f(none['gap_at_kl_ref'])} without intervention; "
           + ", ".join(f"{r['intervention'].split(' (')[0]} {_f(r['gap_at_kl_ref'])}" for r in no_h) + " without information on H; "
           + ", ".join(f"{r['intervention'].split(' (')[0]} {_f(r['gap_at_kl_ref'])}" for r in with_h) + " with it. ")
    d6 = [r for r in no_h if r["drift_at_0"] > 0]
    d6s = ", ".join(_f(r["drift_at_0"]) for r in d6)
    txt += (f"Without H-information the first-order drift ρ'_t(0) stays positive ({d6s}; D.5, D.6). "
            if d6 else "")
    txt += (f"No intervention removes the gap: the smallest gap at λ_max is {_f(best['gap_at_lam_max'])} ({best['intervention'].split(' (')[0]})."
            if best["gap_at_lam_max"] > 1e-3 else f"{best['intervention']} brings the gap at λ_max to {_f(best['gap_at_lam_max'])}.")
    return txt


def _fin(r):
    return f"{_f(r['true_gain_at_max_pressure'])} [{_f(r['final_q05'])}, {_f(r['final_q95'])}]"


def _tails_finding(rows):
    t = {(r["error"].split(":")[0], r["method"]): r for r in rows}
    parts = []
    for m, name in (("bon", "best-of-n"), ("tilt", "tilting")):
        li, he = t.get(("light", m)), t.get(("heavy", m))
        if li is None or he is None:
            continue
        parts.append(f"{name}: light-tailed error raises E[U] by {_fin(li)} at KL {_f(li['kl_max'])} "
                     f"(max {_f(li['max_true_gain'])}); heavy-tailed by {_fin(he)} at KL {_f(he['kl_max'])} "
                     f"(max {_f(he['max_true_gain'])}) while its proxy gains {_f(he['proxy_gain_at_max_pressure'])}")
    he = t.get(("heavy", "bon"))
    tail = ""
    if he is not None:
        falling = he["true_gain_at_max_pressure"] < he["max_true_gain"]
        tail = (f". Heavy-tailed best-of-n {'peaks and falls back' if falling else 'does not fall back'} under more pressure; Kwa et al.'s "
                f"E[U | P ≥ t_n] at the largest n is {_f(he['kwa_conditional_at_max_n'])} (it tends to 0 as t_n grows)")
    return "Tails (Kwa et al.): " + "; ".join(parts) + tail + "."


def _q3(k, h):
    return [(k, h), (f"{k}_q05", "q05"), (f"{k}_q95", "q95")]


def _drift(cfg, T, fig):
    cols = [("variant", "variant"), ("path", "path"), ("lam", "λ"), ("mass_exact", "mass exact"), ("mass_measured", "mass measured")]
    cols += _q3("drift_predicted", "derivative predicted") + _q3("drift_measured", "measured") + [("drift_population", "population")]
    c0 = [("variant", "variant")] + _q3("cov_learned", "Cov_μ(H, ŝ)") + [("cov_population", "population"), ("hacked_pref_hard", "P(a₁ pref | hard)"),
                                                                      ("truth_agree_hard", "P(truth | hard)"), ("truth_agree_easy", "P(truth | easy)"),
                                                                      ("mean_eps_hard", "E[ε | hard]")]
    return [("h2", "Props 1-2: the hard mass drifts where Cov(H, ŝ) > 0"),
            ("img", fig("fig_laws_drift.png"), "Context tilt: ρ(λ) = q_λ(X_hard) and ρ'(λ) vs Cov_{q_λ}(H, ŝ)"),
            ("img", fig("fig_laws_hacked.png"), "Policy tilt: mass of the hacked action on hard contexts and its derivative"),
            ("p", "Channel statistics and the first-order drift Cov_μ(H, ŝ) (D.2) per variant:"), table(c0, T["laws_cov0"]),
            ("p", "Context path: mass = ρ(λ), derivative predicted = Cov_{q_λ}(H, ŝ) (theory.hard_mass_drift). Policy path: mass = E_μ[H π_λ(a₁|X)], "
                  "predicted = E_μ[H Cov_{π_λ}(1{a₁}, r̂)] (per-context tilt identity). Measured = central differences of the simulated mass."),
            table(cols, T["laws_drift"])]


def _b4(cfg, T, fig):
    cols = [("variant", "variant")] + _q3("lam_predicted", "λ* predicted") + _q3("lam_observed", "λ* observed") + \
        [("lam_b4_as_written", "B.4 as written"), ("lam_population", "population"), ("max_abs_pred_minus_obs", "max |pred − obs|"),
         ("grid_step", "grid step"), ("seeds_with_downturn", "seeds")] + _q3("value_peak", "peak value") + [("value_at_lam_max", "V(λ_max)"), ("rho_at_lam_max", "ρ(λ_max)")]
    return [("h2", "B.4: the true value turns down after the threshold"), ("img", fig("fig_laws_b4.png"), "true value of (q_λ, π_λ)"),
            ("p", "λ* predicted = first zero of the exact derivative (theory.overoptimization 'derivative': ρ'(E_h − E_e) + (1−ρ)E_e' + ρE_h'); "
                  "B.4 as written = first zero of ρ'(E_h − E_e) alone; observed = first downturn of the simulated value curve."),
            table(cols, T["laws_b4"])]


def _b10(cfg, T, fig):
    cols = [("variant", "variant"), ("lam", "λ")] + _q3("dpv_exact", "Δ_PV exact") + _q3("dpv_measured", "Δ_PV measured") + \
        _q3("slope_b10", "slope B.10") + _q3("slope_measured", "slope measured") + [("slope_population", "population")]
    return [("h2", "Prop. 6 / B.10: the proxy-true divergence grows at the rate Cov_q(r̂ − r, ŝ)"),
            ("img", fig("fig_laws_b10.png"), "Δ_PV(λ) of the greedy proxy policy under q_λ"),
            ("p", "Fixed policy π(x) = a₁ iff ŝ(x) ≥ 0 (the proxy's greedy choice); Δ_PV = E_{q_λ}[r̂(X, π(X)) − U(X, π(X))] (theory.proxy_true_divergence)."),
            table(cols, T["laws_b10"])]


def _gap(cfg, T, fig):
    cols = [("variant", "variant"), ("beta", "β")] + _q3("gap_closed_form", "gap closed form") + _q3("gap_measured", "gap measured") + \
        _q3("slope_closed_form", "slope closed form") + _q3("slope_measured", "slope measured") + [("gap_population", "gap population"),
                                                                                                ("slope_population", "slope population")]
    pc = [("variant", "variant"), ("peak_predicted_median", "peak β predicted"), ("seeds_peak_inside_grid", "seeds (pred)"),
          ("peak_observed_median", "peak β observed"), ("seeds_peak_observed", "seeds (obs)"), ("seeds", "seeds")] + \
        _q3("true_gain_at_beta_max", "E[U] gain at β_max") + _q3("gap_at_beta_max", "gap at β_max")
    return [("h2", "The v1 Alignment Gap of π_β ∝ π₀ exp(β r̂), r̂ learned from finite biased feedback"),
            ("img", fig("fig_laws_gap.png"), "gap(β): closed form (theory.alignment_gap) vs measured; slope E_c Cov(r̂ − U, r̂) vs finite differences"),
            table(cols, T["laws_gap"]), ("p", "Where the true utility E_{π_β}[U] peaks (theory.true_utility_peak: root of E_c Cov(U, r̂)) "
                                              "vs the maximum of the measured curve (nan/0 seeds: no peak inside the grid, the utility plateaus):"),
            table(pc, T["laws_peak"])]


def _maps(cfg, T, fig):
    cols = [("intervention", "intervention"), ("tau", "τ"), ("phi", "ϕ"), ("beta", "β"), ("drift_at_0", "ρ'_t(0)"),
            ("max_abs_drift_lam_gt_0", "max|ρ'_t(λ>0)|"), ("rho_at_lam_max", "ρ_t(λ_max)"), ("gap_slope_at_0", "gap slope at 0")] + \
        _q3("line_slope", "line slope") + _q3("line_intercept", "line intercept") + \
        [("line_slope_measured", "slope (measured)"), ("line_intercept_measured", "intercept (measured)"), ("gap_at_lam_max", "gap(λ_max)"),
         ("gap_at_kl_ref", "gap at KL_ref"), ("value_peak", "peak true value"), ("value_at_lam_max", "V(λ_max)")]
    sc = [("tau", "τ"), ("phi", "ϕ"), ("tau_realised", "τ real"), ("phi_realised", "ϕ real"), ("beta_star", "β*"), ("drift_at_0", "ρ'_t(0)")] + \
        _q3("max_abs_drift_lam_gt_0", "max|ρ'_t(λ>0)|") + [("rho_excess_at_lam_max", "ρ_t(λ_max) − α")] + _q3("gap_at_lam_max", "gap(λ_max)") + \
        _q3("value_at_lam_max", "V(λ_max)")
    return [("h2", "MAPS on bandits (App. D): what each lever does to the gap curve"), ("img", fig("fig_laws_maps.png"), "MAPS interventions"),
            ("p", "Each intervention replaces the optimised score ŝ by a shaped t (both the context tilt and the policy use t, so a penalty on "
                  "flagged contexts lowers the hacked action's advantage there). Gap = E_{q^t_λ, π^t_λ}[r̂ − U]: the gap of the learned proxy r̂ "
                  f"(what the reward model reports) under the shaped system, one yardstick for every intervention. 'line slope/intercept' = least-squares line gap ≈ intercept + slope·λ over λ ∈ [0, {cfg.lam_max}]; gap slope at 0 "
                  "is exact (bandits.two_tilt); KL_ref = the KL of the unshaped system at λ_max/4 (matched pressure). β* uses the exact "
                  "Cov_μ(H, ŝ) (what an audit set estimates); with the oracle h = H the penalty at β* and the projection ⊥ H are the same score (β* = Cov_μ(H, ŝ)/Var_μ(H)), so their "
                  "rows coincide; the learned flagger is logistic regression of H on x from an audit set of "
                  f"{cfg.audit_size} contexts, keep rate {cfg.keep_factor}α (B.7)."),
            table(cols, T["laws_maps"]), ("h3", "The flagger's (τ, ϕ) sets the residual"),
            ("img", fig("fig_laws_flagger.png"), "penalty at β*(τ, ϕ) for synthetic flaggers"),
            ("p", "β*(τ, ϕ) = Cov_μ(H, ŝ)/(α(1−α)(τ−ϕ)) zeroes ρ'_t(0) for every flagger (D.3); the drift at λ > 0 and the gap that remain "
                  "depend on (τ, ϕ): missed hard contexts keep their hacked advantage, false positives are penalised for nothing."),
            table(sc, T["laws_flagger_sweep"])]


def _trilemma(T, fig):
    cols = [(k, k) for k in ("environment", "alpha_S", "min_margin", "bound_eq1_paper", "bound_proof_k", "bound_proof", "min_sum_regret_exact",
                             "min_sum_sampled", "min_max_regret_lp", "per_objective_paper", "per_objective_proof", "eq1_holds",
                             "proof_bound_holds", "tightness_proof", "policies_sampled")]
    return [("h2", "The multi-objective law (eq. (1)) on the three-action environment"),
            ("img", fig("fig_laws_trilemma.png"), "achievable region of the three regrets"),
            ("p", "The region of achievable (regret₁, regret₂, regret₃) over all stochastic policies and their mixtures is a convex polytope "
                  "(bandits.trilemma): exact Pareto points from its support function, random policies inside it. min Σ regret is exact "
                  "(per-context minimum), min max_j regret is a linear program. The 'tight' environment is built so that the proof's constant "
                  "k = 2 would be attained (the table shows whether it is)."),
            table(cols, T["laws_trilemma"])]


def _tails(cfg, T, fig):
    cols = [(k, k) for k in ("error", "method", "kl_max", "max_true_gain", "max_gain_q05", "max_gain_q95", "true_gain_at_max_pressure",
                             "final_q05", "final_q95", "proxy_gain_at_max_pressure")]
    return [("h2", "Heavy- vs light-tailed proxy error (Kwa et al.)"), ("img", fig("fig_laws_tails.png"), "true utility vs KL"),
            ("p", f"{cfg.tail_arms} arms, U ~ N(0, 1), proxy P = U + X with X ~ N(0, 1) (light) or a Student-t with {cfg.tail_df} degrees of freedom "
                  "(heavy: no moment generating function, so the population tilt does not exist, theory.heavy_tail_tilt; on finitely many "
                  "arms it does). Best-of-n exact (theory.bon_probs on sorted arms), n = 1 … "
                  f"{2 ** cfg.bon_max_log2}; dashed: Kwa et al.'s E[U | P ≥ t_n] at the BoN-matched quantile (theory.conditional_true_mean)."),
            table(cols, T["laws_tails"])]


def _gao(T, fig):
    cols = [("curve", "curve"), ("form", "form"), ("a", "a"), ("a_q05", "q05"), ("a_q95", "q95"), ("b", "b"), ("b_q05", "q05"), ("b_q95", "q95"),
            ("r2", "R²"), ("r2_q05", "q05"), ("r2_q95", "q95"), ("better_fit", "better"), ("d_max", "d_max"),
            ("distinct_d", "distinct d")]
    return [("h2", "Gao et al. forms fitted to the measured curves"), ("img", fig("fig_laws_gao.png"), "fits"),
            ("p", "Least squares (theory.fit_gao) of the true-utility gain against d = √KL, per seed; medians over seeds."), table(cols, T["laws_gao"])]


def _sharp(T, fig):
    sc = [("alpha", "α"), ("eps", "ε"), ("n", "n"), ("paper_bound", "Thm 1 bound"), ("exact_routed", "exact routed/LR"),
          ("exact_flagged", "exact flagged"), ("exact_all_blind", "exact blind"), ("chernoff_approx", "Chernoff approx"),
          ("loose_factor", "exact/bound"), ("bound_holds", "bound holds")]
    sub = [r for r in T["laws_sharp"] if r["n"] in (64, 512, 4096, 32768)]
    lc = [(k, k) for k in ("alpha", "eps", "kappa_per_hit", "chernoff_per_hit", "exponent_ratio", "n_loose_10x", "n_loose_100x", "n_max",
                           "loose_factor_at_n_max", "predicted_factor_at_n_max")]
    dc = [(k, k) for k in ("alpha", "eps", "tau", "phi", "hit_fraction", "vote_accuracy", "Q_theorem3", "Q_diluted_hoeffding", "Q_exact",
                           "exact_over_theorem3", "eta_over_gamma")]
    out = [("h2", "Sharper than the paper: exact errors of the two-world test"), ("img", fig("fig_laws_sharp.png"), "exact vs bound vs Chernoff"),
           ("p", "theory.bayes_error: exact binomial sums (ties by a fair coin). 'routed' = the calibration oracle with n draws (equal to the "
                 "likelihood-ratio test that knows hardness); 'blind' = majority over every label; 'flagged' = keep-flagged + majority with the "
                 "false positives' diluting labels. The bound's exponent is ακ(ε) ≈ 8αε² per round against the "
                 "achievable ≈ 2αε² (Chernoff information), so the gap between them grows like exp(n(ακ − C))."),
           table(sc, sub), ("p", "Where the bound is loose and by how much:"), table(lc, T["laws_looseness"]),
           ("h3", "The flagger's dilution: Theorem 3 vs exact"),
           ("p", "Draws needed for P(ŵ ≠ w) ≤ η/γ: Theorem 3's T/(ατ) (Hoeffding, true hits only), the Hoeffding count with the diluted vote "
                 "accuracy 1/2 + ε ατ/(ατ + (1−α)ϕ), and the exact minimum (bandits.exact.draws_to_reach)."), table(dc, T["laws_dilution"])]
    if T.get("laws_lab_vs_exact"):
        cc = [(k, k) for k in ("alpha", "eps", "protocol", "exact_name", "n", "simulated", "sim_lo99", "sim_hi99", "exact", "exact_bandits_exact",
                               "within_interval", "implementations_agree")]
        out += [("h3", "The lab's simulated protocols vs the exact errors"), ("p", "Rows at three n; all in laws_lab_vs_exact.csv."),
                table(cc, [r for r in T["laws_lab_vs_exact"] if r["n"] in (64, 512, 4096)])]
    return out
