"""Tables of the "laws" section: predicted next to measured, medians over seeds with 90 % intervals."""

from __future__ import annotations

import math

import numpy as np

from murphyjax import theory as T
from murphyjax.bandits import tiltsim
from murphyjax.experiments.laws.other_laws import q90

SHOW_LAMS = (0.5, 1.0, 2.0, 4.0, 8.0)


def _shown(lams):
    """The SHOW_LAMS whose nearest grid point is interior (finite differences need a neighbour on each side)."""
    idx = [int(np.argmin(np.abs(np.asarray(lams) - lam))) for lam in SHOW_LAMS]
    return [lam for lam, i in zip(SHOW_LAMS, idx) if 0 < i < len(lams) - 1]


def _at(lams, y, lam):
    """Column of y (S, L) at the grid point nearest lam."""
    return y[:, int(np.argmin(np.abs(np.asarray(lams) - lam)))]


def _q(prefix, x):
    m, lo, hi = q90(x)
    return {prefix: float(m), f"{prefix}_q05": float(lo), f"{prefix}_q95": float(hi)}


def finite_differences(y, lams):
    """Central differences along the last axis, padded with nan at both ends (grid-aligned)."""
    _, d = tiltsim.central_difference(y, lams)
    pad = np.full(d.shape[:-1] + (1,), np.nan)
    return np.concatenate([pad, d, pad], -1)


def drift_table(cfg, res) -> list:
    """Props 1-2: the measured hard-mass derivative vs Cov(H, s_hat) (context path) and the hacked
    mass E[H pi(a_1)] derivative vs E_mu[H Cov_pi(1{a_1}, r_hat)] (policy path)."""
    lams, rows = cfg.lams, []
    for v, r in res.items():
        for path, mass, pred in (("context", "rho", "drift"), ("policy", "hacked", "dhacked")):
            meas = finite_differences(r[f"{path}.measured.{mass}"], lams)
            for lam in _shown(lams):
                rows.append({"variant": v, "path": path, "lam": lam, **_q("mass_exact", _at(lams, r[f"{path}.learned.{mass}"], lam)),
                             "mass_measured": float(np.median(_at(lams, r[f"{path}.measured.{mass}"], lam))),
                             **_q("drift_predicted", _at(lams, r[f"{path}.learned.{pred}"], lam)),
                             **_q("drift_measured", _at(lams, meas, lam)),
                             "drift_population": float(np.median(_at(lams, r[f"{path}.population.{pred}"], lam)))})
    return rows


def cov0_table(res) -> list:
    """Cov_mu(H, s_hat) at lambda = 0 per variant (learned and population proxies) and channel statistics."""
    return [{"variant": v, **_q("cov_learned", r["cov0.learned"]), "cov_population": float(np.median(r["cov0.population"])),
             "hacked_pref_hard": float(np.median(r["stat.hacked_pref_hard"])), "truth_agree_hard": float(np.median(r["stat.truth_agree_hard"])),
             "truth_agree_easy": float(np.median(r["stat.truth_agree_easy"])), "mean_eps_hard": float(np.median(r["stat.mean_eps_hard"]))}
            for v, r in res.items()]


def observed_threshold(values, lams):
    """First lambda where the measured true value turns down (central differences of a CRN curve)."""
    return T.first_downturn(lams[1:-1], tiltsim.central_difference(values, lams)[1])


def b4_table(cfg, res) -> list:
    """B.4: the downturn of the true value of (q_lambda, pi_lambda), predicted and observed."""
    lams, rows = cfg.lams, []
    for v, r in res.items():
        S = r["context.learned.value"].shape[0]
        full = np.asarray([T.first_downturn(lams, r["context.learned.dvalue_b4"][i]) for i in range(S)])
        paper = np.asarray([T.first_downturn(lams, r["context.learned.dvalue_paper"][i]) for i in range(S)])
        pop = np.asarray([T.first_downturn(lams, r["context.population.dvalue_b4"][i]) for i in range(S)])
        obs = np.asarray([observed_threshold(r["context.measured.value"][i], lams) for i in range(S)])
        step = float(lams[1] - lams[0])
        rows.append({"variant": v, **_q("lam_predicted", full), **_q("lam_observed", obs), **_q("lam_b4_as_written", paper),
                     "lam_population": float(np.nanmedian(pop)) if np.isfinite(pop).any() else math.nan,
                     "max_abs_pred_minus_obs": float(np.nanmax(np.abs(full - obs))) if np.isfinite(full - obs).any() else math.nan,
                     "grid_step": step, "seeds_with_downturn": int(np.isfinite(full).sum()),
                     "value_at_0": float(np.median(r["context.learned.value"][:, 0])),
                     **_q("value_peak", r["context.learned.value"].max(1)), **_q("value_at_lam_max", r["context.learned.value"][:, -1]),
                     "rho_at_lam_max": float(np.median(r["context.learned.rho"][:, -1]))})
    return rows


def _curve_rows(cfg, res, lam_col, path, value, slope, names):
    """Per variant and shown lambda: a curve and its slope, exact (learned proxy) vs measured vs population.

    names = (value exact, value measured, slope predicted, slope population) column names."""
    lams, rows = cfg.lams, []
    for v, r in res.items():
        meas = finite_differences(r[f"{path}.measured.{value[1]}"], lams)
        for lam in _shown(lams):
            rows.append({"variant": v, lam_col: lam, **_q(names[0], _at(lams, r[f"{path}.learned.{value[0]}"], lam)),
                         **_q(names[1], _at(lams, r[f"{path}.measured.{value[1]}"], lam)),
                         **_q(names[2], _at(lams, r[f"{path}.learned.{slope}"], lam)), **_q("slope_measured", _at(lams, meas, lam)),
                         names[3]: float(np.median(_at(lams, r[f"{path}.population.{slope}"], lam)))})
    return rows


def b10_table(cfg, res) -> list:
    """Prop. 6 / B.10: the proxy-true divergence of the greedy proxy policy under q_lambda and its slope."""
    return _curve_rows(cfg, res, "lam", "context", ("dpv", "dpv"), "dpv_slope", ("dpv_exact", "dpv_measured", "slope_b10", "slope_population"))


def gap_table(cfg, res) -> list:
    """The v1 Alignment Gap of pi_beta ∝ pi_0 exp(beta r_hat): closed form (theory.alignment_gap) vs measured."""
    rows = _curve_rows(cfg, res, "beta", "policy", ("gap_v1", "gap"), "slope_v1",
                       ("gap_closed_form", "gap_measured", "slope_closed_form", "slope_population"))
    for r, lam in zip(rows, [r["beta"] for r in rows]):
        v = res[r["variant"]]
        r["gap_population"] = float(np.median(_at(cfg.lams, v["policy.population.gap_v1"], lam)))
    return rows


def peak_table(cfg, res) -> list:
    """Where E[U] under pi_beta peaks: theory.true_utility_peak vs the measured curve's maximum."""
    lams, rows = cfg.lams, []
    for v, r in res.items():
        pred = r["policy.learned.peak_v1"]
        obs = np.asarray([tiltsim.peak(r["policy.measured.value"][i], lams) for i in range(pred.shape[0])])
        inside = np.where(pred <= lams[-1], pred, np.nan)
        rows.append({"variant": v, "peak_predicted_median": float(np.nanmedian(inside)) if np.isfinite(inside).any() else math.nan,
                     "seeds_peak_inside_grid": int(np.isfinite(inside).sum()), "peak_observed_median": float(np.nanmedian(obs)) if np.isfinite(obs).any() else math.nan,
                     "seeds_peak_observed": int(np.isfinite(obs).sum()), "seeds": int(pred.shape[0]),
                     **_q("true_gain_at_beta_max", r["policy.learned.true_v1"][:, -1] - r["policy.learned.true_v1"][:, 0]),
                     **_q("gap_at_beta_max", r["policy.learned.gap_v1"][:, -1])})
    return rows


MAPS_ORDER = ("none", "penalty_oracle", "penalty_learned", "project_oracle", "project_learned", "temperature", "penalty_uninformative")
MAPS_LABEL = {"none": "none (t = s)", "penalty_oracle": "flagger penalty β*, oracle h = H (D.3)",
              "penalty_learned": "flagger penalty β*, learned flagger (D.3)", "project_oracle": "projection ⊥ H (D.4)",
              "project_learned": "projection ⊥ learned flagger (D.4)", "temperature": "temperature t = s/T (D.5)",
              "penalty_uninformative": "penalty with τ = ϕ (uninformative, D.3/D.6)"}


def _line(lams, y):
    """Least-squares line y ≈ intercept + slope lambda over the grid (S, L) -> (slope (S,), intercept (S,))."""
    X = np.stack([np.ones_like(lams), lams], 1)
    coef = np.linalg.lstsq(X, np.asarray(y).T, rcond=None)[0]
    return coef[1], coef[0]


def _at_kl(kl, y, ref):
    return np.asarray([np.interp(ref, kl[i], y[i], right=np.nan) for i in range(kl.shape[0])])


def maps_table(cfg, m) -> list:
    """Slope and intercept of the gap curve (and the drift) with and without each MAPS intervention."""
    lams, rows = cfg.lams, []
    kl_ref = float(np.median(m["none.kl"][:, len(lams) // 4]))
    for name in MAPS_ORDER:
        sl, ic = _line(lams, m[f"{name}.gap"])
        msl, mic = _line(lams, m[f"{name}.measured_gap"])
        dr = m[f"{name}.drift"]
        rows.append({"intervention": MAPS_LABEL[name], "tau": float(np.median(m[f"{name}.tau"])), "phi": float(np.median(m[f"{name}.phi"])),
                     "beta": float(np.median(m[f"{name}.beta"])), **_q("drift_at_0", m[f"{name}.cov0"]),
                     **_q("max_abs_drift_lam_gt_0", np.abs(dr[:, 1:]).max(1)), "rho_at_lam_max": float(np.median(m[f"{name}.rho"][:, -1])),
                     **_q("gap_slope_at_0", m[f"{name}.dgap"][:, 0]), **_q("line_slope", sl), **_q("line_intercept", ic),
                     "line_slope_measured": float(np.median(msl)), "line_intercept_measured": float(np.median(mic)),
                     **_q("gap_at_lam_max", m[f"{name}.gap"][:, -1]), "gap_at_kl_ref": float(np.nanmedian(_at_kl(m[f"{name}.kl"], m[f"{name}.gap"], kl_ref))),
                     "kl_ref": kl_ref, **_q("value_peak", m[f"{name}.value"].max(1)), "value_at_lam_max": float(np.median(m[f"{name}.value"][:, -1]))})
    return rows


def sweep_table(cfg, m) -> list:
    """The learned/synthetic flagger's (tau, phi) sets the residual: penalty at beta*(tau, phi)."""
    rows = []
    for tau in cfg.taus:
        for phi in cfg.phis:
            k = f"sweep.{tau}.{phi}"
            if f"{k}.gap" not in m:
                continue
            rows.append({"tau": tau, "phi": phi, "tau_realised": float(np.median(m[f"{k}.tau"])), "phi_realised": float(np.median(m[f"{k}.phi"])),
                         "beta_star": float(np.median(m[f"{k}.beta"])), "drift_at_0": float(np.median(m[f"{k}.cov0"])),
                         **_q("max_abs_drift_lam_gt_0", np.abs(m[f"{k}.drift"][:, 1:]).max(1)),
                         "rho_excess_at_lam_max": float(np.median(m[f"{k}.rho"][:, -1])) - cfg.alpha,
                         **_q("gap_at_lam_max", m[f"{k}.gap"][:, -1]), **_q("value_at_lam_max", m[f"{k}.value"][:, -1])})
    return rows
