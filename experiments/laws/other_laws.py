"""The other laws: the trilemma region, heavy vs light tails, Gao et al. fits, and
sharper-than-the-paper testing errors (exact Bayes errors, Chernoff, the flagger's dilution).

Every function returns plain rows (dicts) or arrays for the report; all are deterministic given
the config seed.
"""

from __future__ import annotations

import math
import warnings

import jax
import numpy as np

from murphyjax import theory as T
from murphyjax.bandits import envs, exact, tails, trilemma
from murphyjax.experiments.laws.config import LawsConfig


def q90(x, axis=0):
    """(median, 5 %, 95 %) over seeds (the paper's medians with 90 % intervals)."""
    x = np.asarray(x, float)
    with warnings.catch_warnings():  # an all-nan column (e.g. no seed turned down) is a nan entry, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return tuple(np.nanquantile(x, q, axis=axis) for q in (0.5, 0.05, 0.95))


# --------------------------------------------------------------------------- trilemma
def trilemma_region(cfg: LawsConfig, n_random: int = 3000) -> dict:
    """Region of (regret_1, regret_2, regret_3) for a random and a tight three-objective environment."""
    out = {"rows": [], "clouds": {}}
    specs = [("random (envs.random_three_objective)", envs.random_three_objective(jax.random.key(cfg.seed), 30, 0.1, 0.2)),
             ("tight (trilemma.tight_three_objective)", trilemma.tight_three_objective(30, 0.1, 0.2))]
    for name, env in specs:
        Rw = trilemma.regret_table(env)
        K = Rw.shape[0]
        sd = 1000 * cfg.seed + 2 * len(out["rows"])
        det = trilemma.policy_regrets(Rw, trilemma.random_policies(sd, K, n_random, True))
        sto = trilemma.policy_regrets(Rw, trilemma.random_policies(sd + 1, K, n_random, False))
        sup = trilemma.support_points(Rw, trilemma.simplex_grid(24))
        paper = T.multiobjective_bound(env.g, env.mu, env.S, constant="paper")
        proof = T.multiobjective_bound(env.g, env.mu, env.S, constant="proof")
        mins, minmax = trilemma.min_sum_regret(Rw), trilemma.min_max_regret(Rw)
        pts = np.concatenate([det, sto, sup])
        out["rows"].append({
            "environment": name, "alpha_S": float(paper["alpha_S"]), "min_margin": float(np.min(paper["margins"])),
            "bound_eq1_paper": float(paper["bound"]), "bound_proof_k": int(proof["k"]), "bound_proof": float(proof["bound"]),
            "min_sum_regret_exact": mins, "min_sum_sampled": float(pts.sum(1).min()),
            "min_max_regret_lp": minmax, "per_objective_paper": float(paper["bound"]) / 3, "per_objective_proof": float(proof["bound"]) / 3,
            "eq1_holds": bool(mins >= float(paper["bound"]) - 1e-12), "proof_bound_holds": bool(mins >= float(proof["bound"]) - 1e-12),
            "tightness_proof": mins / float(proof["bound"]), "policies_sampled": int(pts.shape[0])})
        out["clouds"][name.split(" ")[0]] = {"det": det, "sto": sto, "support": sup, "paper": float(paper["bound"]), "proof": float(proof["bound"])}
    return out


# --------------------------------------------------------------------------- heavy vs light tails
def tail_curves(cfg: LawsConfig) -> dict:
    """BoN and tilting curves for the light and heavy bandits over seeds: {error: {method: {key: (S, L)}}}."""
    ns = 2 ** np.arange(cfg.bon_max_log2 + 1)
    lams = np.concatenate([[0.0], np.geomspace(1e-3, 4.0, 40)])  # log-spaced: a heavy-tailed proxy's tilt saturates at tiny lambda
    res = {}
    for e_i, error in enumerate(tails.ERRORS):
        acc = {"bon": [], "tilt": [], "P": []}
        for s in range(cfg.seeds):
            U, P = tails.tail_bandit(jax.random.fold_in(jax.random.key(cfg.seed + 17), 100 * e_i + s), cfg.tail_arms, error, df=cfg.tail_df)
            acc["bon"].append(tails.bon_curve(U, P, ns))
            acc["tilt"].append(tails.tilt_curve(U, P, lams))
            acc["P"].append(np.asarray(P))
        res[error] = {m: {k: np.stack([c[k] for c in acc[m]]) for k in acc[m][0]} for m in ("bon", "tilt")}
        # the reference curve at the seeds' median BoN-matched thresholds (one quadrature per error: it is the costly part)
        res[error]["limit"] = tails.conditional_limit(np.stack(acc["P"]), ns, error, df=cfg.tail_df)[None]
    return res


def tail_rows(res: dict) -> list:
    """Per (error law, method): true-utility gain at its maximum and at the largest pressure (median, 90 % interval over seeds), proxy gain, Kwa et al.'s reference."""
    rows = []
    for error, r in res.items():
        for m in ("bon", "tilt"):
            tr, kl = r[m]["true"], r[m]["kl"]
            gain = tr - tr[:, :1]
            med, lo, hi = q90(gain.max(1))
            fm, flo, fhi = q90(gain[:, -1])
            rows.append({"error": "light: N(0,1)" if error == "normal" else "heavy: Student-t", "method": m,
                         "kl_max": float(np.median(kl[:, -1])), "max_true_gain": float(med), "max_gain_q05": float(lo),
                         "max_gain_q95": float(hi), "true_gain_at_max_pressure": float(fm), "final_q05": float(flo),
                         "final_q95": float(fhi), "proxy_gain_at_max_pressure": float(np.median(r[m]["proxy"][:, -1] - r[m]["proxy"][:, 0])),
                         "kwa_conditional_at_max_n": float(np.median(r["limit"][:, -1])) if m == "bon" else math.nan})
    return rows


# --------------------------------------------------------------------------- Gao et al. fits
def fit_both(d, gain) -> dict:
    """Fit R(d) = d (a - b d) (bon form) and R(d) = d (a - b log d) (rl form); R^2 of each."""
    out = {}
    for form in ("bon", "rl"):
        f = T.fit_gao(d, gain, form)
        out[form] = (f["a"], f["b"], f["r2"])
    return out


def gao_rows(curves: dict) -> list:
    """curves: {name: (d (S, L), gain (S, L))}. One row per curve and form: medians over seeds."""
    rows = []
    for name, (d, gain) in curves.items():
        fits = [fit_both(d[i], gain[i]) for i in range(d.shape[0])]
        r2 = {f: np.asarray([x[f][2] for x in fits]) for f in ("bon", "rl")}
        better = "bon" if np.median(r2["bon"]) >= np.median(r2["rl"]) else "rl"
        for form in ("bon", "rl"):
            a = np.asarray([x[form][0] for x in fits])
            b = np.asarray([x[form][1] for x in fits])
            (am, alo, ahi), (bm, blo, bhi), (rm, rlo, rhi) = q90(a), q90(b), q90(r2[form])
            rows.append({"curve": name, "form": "d(a - b d)" if form == "bon" else "d(a - b log d)", "a": float(am), "a_q05": float(alo),
                         "a_q95": float(ahi), "b": float(bm), "b_q05": float(blo), "b_q95": float(bhi), "r2": float(rm),
                         "r2_q05": float(rlo), "r2_q95": float(rhi), "better_fit": form == better,
                         "d_max": float(np.median(d[:, -1])), "distinct_d": int(np.median([len(np.unique(np.round(x, 4))) for x in d]))})
    return rows


# --------------------------------------------------------------------------- sharper than the paper
def sharp_curves(cfg: LawsConfig, tau: float = 0.8, phi: float = 0.02) -> list:
    """Exact Bayes errors (query-everything blind, routed/LR with hardness known, flagged) next to
    Theorem 1's bound (1/4) exp(-n alpha kappa) and the Chernoff approximation, on a log2 n grid."""
    ns = 2 ** np.arange(4, int(math.log2(cfg.sharp_n_max)) + 1)
    rows = []
    for a, e in cfg.sharp_cells:
        ex = T.error_exponents(a, e)
        exact = {name: np.asarray(T.bayes_error_grid(name, ns, a, e, *tp)) for name, tp in
                 (("all_blind", ()), ("routed", ()), ("flagged", (tau, phi)))}  # theory.bayes_error, one compilation per grid
        for i, n in enumerate(ns):
            b = float(T.sign_error_lower_bound(n, a, e))
            r = {"alpha": a, "eps": e, "n": int(n), "paper_bound": b, "chernoff_approx": float(T.chernoff_error_approx(n, a, e)),
                 "exact_all_blind": float(exact["all_blind"][i]), "exact_routed": float(exact["routed"][i]),
                 "exact_flagged": float(exact["flagged"][i]), "tau": tau, "phi": phi,
                 "exponent_paper": float(ex["paper_bound"]), "exponent_achievable": float(ex["achievable"]), "exponent_blind": float(ex["blind"])}
            r["loose_factor"] = r["exact_routed"] / b  # how far the best protocol's error sits above the bound
            r["bound_holds"] = bool(min(r["exact_all_blind"], r["exact_routed"], r["exact_flagged"]) >= b)
            rows.append(r)
    return rows


def looseness_rows(rows: list) -> list:
    """Per (alpha, eps): the n where the exact (routed) error exceeds the bound by 10x and 100x."""
    out = []
    for a, e in sorted({(r["alpha"], r["eps"]) for r in rows}):
        sub = [r for r in rows if r["alpha"] == a and r["eps"] == e]
        first = lambda f: next((r["n"] for r in sub if r["loose_factor"] >= f), math.nan)
        last = sub[-1]
        out.append({"alpha": a, "eps": e, "kappa_per_hit": float(T.kappa(e)), "chernoff_per_hit": float(T.chernoff_information(e)),
                    "exponent_ratio": last["exponent_paper"] / last["exponent_achievable"], "n_loose_10x": first(10.0),
                    "n_loose_100x": first(100.0), "n_max": last["n"], "loose_factor_at_n_max": last["loose_factor"],
                    "predicted_factor_at_n_max": math.exp(last["n"] * (last["exponent_paper"] - last["exponent_achievable"]))})
    return out


def dilution_rows(cfg: LawsConfig, tau: float = 0.8, phis=(0.0, 0.005, 0.02, 0.05), gamma_frac: float = 0.01) -> list:
    """Theorem 3 vs the flagger's dilution: vote accuracy, Hoeffding draws, exact draws (bandits.exact)."""
    rows = []
    for a, e in cfg.sharp_cells:
        for phi in phis:
            acc = float(T.diluted_vote_accuracy(a, e, tau, phi))
            thm3 = float(T.oracle_queries(a, e, 1.0, gamma_frac, tpr=tau))
            dil = float(T.diluted_flagger_queries(a, e, 1.0, gamma_frac, tau, phi))
            ex = float(exact.draws_to_reach(gamma_frac, a, e, tau, phi, rtol=1e-3, max_draws=2**36))
            rows.append({"alpha": a, "eps": e, "tau": tau, "phi": phi, "hit_fraction": float(T.flagger_hit_fraction(a, tau, phi)),
                         "vote_accuracy": acc, "Q_theorem3": thm3, "Q_diluted_hoeffding": dil, "Q_exact": ex,
                         "exact_over_theorem3": ex / thm3, "eta_over_gamma": gamma_frac})
    return rows


def lab_comparison(lab_cfg, lab_rows, A) -> list:
    """The lab's simulated two-point protocols vs the exact Bayes errors where they coincide.

    majority_all = "all_blind", oracle (routed majority, flag = hardness) = "routed", flag_synth =
    "flagged" at the lab's synthetic (tau, phi). Pooled over seeds, both worlds and every d; the
    99 % interval is the normal one with a 1/k continuity margin, k = seeds x replicates.
    Also checks theory.bayes_error against bandits.exact.routed_majority_error (two implementations).
    """
    if A is None or "test.oracle.err" not in A:
        return []
    pairs = {"majority_all": ("all_blind", 1.0, 1.0), "oracle": ("routed", 1.0, 0.0), "flag_synth": ("flagged", lab_cfg.synth_tau, lab_cfg.synth_phi)}
    rows = []
    reps = lab_cfg.replicates
    for a in lab_cfg.alphas:
        for e in lab_cfg.epss:
            idx = [i for i, r in enumerate(lab_rows) if r["alpha"] == a and r["eps"] == e]
            for proto, (name, tau, phi) in pairs.items():
                err = A[f"test.{proto}.err"][idx]  # (rows, 2 worlds, grid): means over replicates
                exact_grid = np.asarray(T.bayes_error_grid(name, lab_cfg.n_grid, a, e, *((tau, phi) if name == "flagged" else ())))
                for j, n in enumerate(lab_cfg.n_grid):
                    m = float(err[:, :, j].mean())  # both worlds (equal exact error by symmetry)
                    k = len(idx) * reps  # conservative: the two worlds share uniforms
                    lo = max(0.0, m - 2.576 * math.sqrt(max(m * (1 - m), 1e-12) / k) - 1.0 / k)
                    hi = min(1.0, m + 2.576 * math.sqrt(max(m * (1 - m), 1e-12) / k) + 1.0 / k)
                    ex = float(exact_grid[j])
                    ex2 = float(exact.routed_majority_error(n, a, e, tau, phi))
                    rows.append({"alpha": a, "eps": e, "protocol": proto, "exact_name": name, "n": int(n), "simulated": m,
                                 "sim_lo99": lo, "sim_hi99": hi, "transcripts": k, "exact": ex, "exact_bandits_exact": ex2,
                                 "implementations_agree": abs(ex - ex2) <= 1e-9 + 1e-7 * ex, "within_interval": lo <= ex <= hi})
    return rows
