"""Numbers of the LLM Murphy section: normalised points, curves over seeds, fits, and the tables.

Normalisation (Gao et al. 2022): proxy and true utility are centred at the reference policy and
divided by their standard deviation over the reference's samples, per (task, channel, seed):
  proxy_n = (E r - E_ref r) / sd_ref(r),  true_n = (E U - E_ref U) / sd_ref(U),  gap = proxy_n - true_n,
so every method starts at gap 0 and the gap is in reference standard deviations. The common pressure
axis is d = sqrt(KL(pi || pi_ref)) (exact KL along the samples; best-of-n: exact KL of the best-of-n
law on the empirical sample law). Slopes and intercepts are least-squares fits gap = a + b d per
seed; medians and 90 % intervals over seeds (``bandits.diagnostics.quantile_summary``).
"""

from __future__ import annotations

import math

import numpy as np

from murphyjax import theory
from murphyjax.bandits.diagnostics import quantile_summary

QUANTS = ("proxy", "true", "hacked", "proxy_n", "true_n", "gap", "d", "kl_exact", "kl_k1", "kl_k3", "drift")
LABEL = {"sft": "SFT", "ppo": "RLHF (PPO, KL in reward)", "grpo": "RLHF (group-relative, KL in loss)", "dpo": "DPO",
         "ipo": "IPO", "fdpo": "f-DPO (JS)", "cai": "Constitutional AI / RLAIF", "rest": "ReST", "bon": "best-of-n"}


def _nan(x):
    return float("nan") if x is None else float(x)


def points(results: dict) -> list[dict]:
    """One row per (task, run, curve point) with normalised quantities."""
    rows = []
    for task, res in results.items():
        for rec in res["runs"]:
            rm = res["rms"][f"{rec['channel']}_s{rec['seed']}"]
            ref, ps, ts = rm["ref"], rm["ref_proxy_sd"], rm["ref_true_sd"]
            sweep = rec["sweep"]
            tag = "" if not (sweep.get("kl_coef") is not None or sweep.get("beta") is not None) else \
                (f"kl_coef={sweep['kl_coef']:g}" if sweep.get("kl_coef") is not None else f"beta={sweep['beta']:g}")
            for p in rec["curve"]:
                kl = _nan(p.get("kl_exact"))
                r = {"task": task, "method": rec["method"], "variant": rec["variant"], "sweep": tag, "seed": rec["seed"],
                     "pressure_name": rec["pressure"], "pressure": p["pressure"], "proxy": p["proxy"], "true": p["true"],
                     "hacked": p["hacked"], "kl_exact": kl, "kl_k1": _nan(p.get("kl_k1")), "kl_k3": _nan(p.get("kl_k3")),
                     "kl_bound": _nan(p.get("kl_bound")), "drift": _nan(p.get("drift")), "drift_se": _nan(p.get("drift_se")),
                     "true_hard": _nan(p.get("true_hard")), "true_easy": _nan(p.get("true_easy"))}
                r["d"] = math.sqrt(max(kl, 0.0)) if math.isfinite(kl) else float("nan")
                r["proxy_n"] = (r["proxy"] - ref["proxy"]) / ps if ps > 0 else float("nan")
                r["true_n"] = (r["true"] - ref["true"]) / ts if ts > 0 else float("nan")
                r["gap"] = r["proxy_n"] - r["true_n"]
                rows.append(r)
    return rows


def _groups(rows, keys):
    out = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def curves(rows) -> list[dict]:
    """Median and 90 % interval over seeds of every quantity, per (task, method, variant, sweep, pressure)."""
    out = []
    for key, grp in sorted(_groups(rows, ("task", "method", "variant", "sweep", "pressure")).items(),
                           key=lambda kv: (kv[0][:4], kv[0][4])):
        row = dict(zip(("task", "method", "variant", "sweep", "pressure"), key), seeds=len(grp),
                   pressure_name=grp[0]["pressure_name"])
        for q in QUANTS:
            vals = np.asarray([g[q] for g in grp], float)
            vals = vals[np.isfinite(vals)]
            med, lo, hi = quantile_summary(vals) if vals.size else (np.nan, np.nan, np.nan)
            row[q], row[q + "_q05"], row[q + "_q95"] = float(med), float(lo), float(hi)
        out.append(row)
    return out


def _fit_line(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return float("nan"), float("nan")
    b, a = np.polyfit(x[ok], y[ok], 1)
    return float(a), float(b)


def method_table(rows, cv, rms_queries: dict) -> list[dict]:
    """Per (task, method, variant): gap slope/intercept vs d (median [q05, q95] over seeds), peak true utility
    and where, final quantities, and the labels spent on the feedback."""
    out = []
    base = [r for r in rows if not r["sweep"]]
    for (task, method, variant), grp in sorted(_groups(base, ("task", "method", "variant")).items()):
        fits = [_fit_line([g["d"] for g in s], [g["gap"] for g in s]) for s in _groups(grp, ("seed",)).values()]
        a = np.asarray([f[0] for f in fits]), np.asarray([f[1] for f in fits])
        c = [r for r in cv if (r["task"], r["method"], r["variant"], r["sweep"]) == (task, method, variant, "")]
        i = int(np.nanargmax([r["true"] for r in c]))
        row = {"task": task, "method": method, "label": LABEL[method], "variant": variant, "seeds": len(fits),
               "pressure_name": c[-1]["pressure_name"]}
        for name, v in (("intercept", a[0]), ("slope", a[1])):
            med, lo, hi = quantile_summary(v[np.isfinite(v)]) if np.isfinite(v).any() else (np.nan,) * 3
            row[name], row[name + "_q05"], row[name + "_q95"] = float(med), float(lo), float(hi)
        row.update(peak_true=c[i]["true"], peak_at=c[i]["pressure"], peak_d=c[i]["d"], start_true=c[0]["true"],
                   final_true=c[-1]["true"], final_proxy_n=c[-1]["proxy_n"], final_gap=c[-1]["gap"],
                   final_gap_q05=c[-1]["gap_q05"], final_gap_q95=c[-1]["gap_q95"], start_hacked=c[0]["hacked"],
                   final_hacked=c[-1]["hacked"], final_d=c[-1]["d"],
                   labels=rms_queries.get((task, grp[0]["seed"], method, variant), float("nan")))
        out.append(row)
    return out


def gao_fits(rows) -> list[dict]:
    """Gao et al. forms fitted to the true-utility gain vs d (pooled seeds): bon for best-of-n, rl otherwise."""
    out = []
    base = [r for r in rows if not r["sweep"] and r["variant"] == "base"]
    for (task, method), grp in sorted(_groups(base, ("task", "method")).items()):
        d = np.asarray([g["d"] for g in grp], float)
        y = np.asarray([g["true_n"] for g in grp], float)
        ok = np.isfinite(d) & np.isfinite(y)
        if ok.sum() < 3:
            continue
        form = "bon" if method == "bon" else "rl"
        f = theory.fit_gao(d[ok], y[ok], form)
        out.append({"task": task, "method": method, "form": form, "a": f["a"], "b": f["b"], "r2": f["r2"],
                    "peak_d_fit": f["peak"]["d"], "peak_value_fit": f["peak"]["value"], "points": int(ok.sum())})
    return out


def sweep_table(cv) -> list[dict]:
    """Final points of the pressure sweeps (PPO KL coefficient, DPO beta) next to the default run."""
    out = []
    for r in cv:
        if r["method"] not in ("ppo", "dpo") or r["variant"] != "base":
            continue
        last = max(x["pressure"] for x in cv if (x["task"], x["method"], x["variant"], x["sweep"]) ==
                   (r["task"], r["method"], r["variant"], r["sweep"]))
        if r["pressure"] == last:
            out.append(r)
    return out


def finals_table(results: dict, key: str) -> list[dict]:
    """Temperature or shift evaluations of the final base policies (median over seeds)."""
    rows = []
    for task, res in results.items():
        refs = res["rms"]
        for rec in res["runs"]:
            f = rec.get("finals", {}).get(key)
            if not f:
                continue
            rm = refs[f"{rec['channel']}_s{rec['seed']}"]
            last = rec["curve"][-1]
            items = [("1", last)] + list(f.items()) if key == "temperature" else [("0", last)] + list(f.items())
            for setting, s in items:
                pn = (s["proxy"] - rm["ref"]["proxy"]) / rm["ref_proxy_sd"]
                tn = (s["true"] - rm["ref"]["true"]) / rm["ref_true_sd"]
                rows.append({"task": task, "method": rec["method"], "seed": rec["seed"], key: float(setting),
                             "proxy": s["proxy"], "true": s["true"], "hacked": s["hacked"], "gap": pn - tn,
                             "kl_exact": s.get("kl_exact", float("nan")), "true_hard": s.get("true_hard", float("nan"))})
    out = []
    for k, grp in sorted(_groups(rows, ("task", "method", key)).items()):
        row = dict(zip(("task", "method", key), k), seeds=len(grp))
        for q in ("proxy", "true", "hacked", "gap", "kl_exact", "true_hard"):
            med, lo, hi = quantile_summary(np.asarray([g[q] for g in grp], float))
            row[q], row[q + "_q05"], row[q + "_q95"] = float(med), float(lo), float(hi)
        out.append(row)
    return out


def rm_table(results: dict) -> list[dict]:
    """Feedback channels and reward models: label accuracy, learned proxy accuracy vs truth, labels, beta*."""
    rows = []
    for task, res in results.items():
        for k, rm in sorted(res["rms"].items()):
            rows.append({"task": task, "channel": rm["channel"], "seed": rm["seed"],
                         **{q: rm[q] for q in ("label_accuracy_hard", "label_accuracy_easy", "chosen_hacked_hard",
                                               "rm_true_accuracy_hard", "rm_true_accuracy_easy", "queries", "routed",
                                               "cov_H_r", "beta_star", "hard_mass_ref", "routed_label_accuracy_predicted")},
                         "ref_true": rm["ref"]["true"], "ref_proxy": rm["ref"]["proxy"]})
    return rows


def events_table(results: dict) -> list[dict]:
    rows = []
    for task, res in results.items():
        for rec in res["runs"]:
            if rec["method"] == "bon" or (rec["sweep"].get("kl_coef") is not None or rec["sweep"].get("beta") is not None):
                continue
            ev = rec.get("event")
            rows.append({"task": task, "method": rec["method"], "variant": rec["variant"], "seed": rec["seed"],
                         "onset": ev["step"] if ev else None, "confirmed_at": ev["confirmed_at"] if ev else None,
                         "final_true_change": rec["curve"][-1]["true"] - rec["curve"][0]["true"]})
    return rows


def queries(results: dict) -> dict:
    """Labels spent per (task, seed, method, variant) from the channel records."""
    from murphyjax.experiments.llm_methods import channel_for

    out = {}
    for task, res in results.items():
        for rec in res["runs"]:
            rm = res["rms"][f"{channel_for(rec['method'], rec['variant'])}_s{rec['seed']}"]
            out[(task, rec["seed"], rec["method"], rec["variant"])] = rm["queries"]
    return out
