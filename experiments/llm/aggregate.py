"""Numbers of the LLM Murphy section: normalised points, curves over seeds, fits, and the tables.

Normalisation (Gao et al. 2022): proxy and true utility are centred at the reference policy and
divided by their standard deviation over the reference's samples, per (task, channel, seed):
  proxy_n = (E r - E_ref r) / sd_ref(r),  true_n = (E U - E_ref U) / sd_ref(U),  gap = proxy_n - true_n,
so every method starts at gap 0 and the gap is in reference standard deviations. Beside it, the
paper's gap G(pi) = U(pi+) - U(pi) in the task's utility units, U(pi+) the exact utility of the best
policy (``tasks.best_utility``): it is not 0 at the reference, so an intervention's change of
intercept is measurable; and the same gap on each stratum, G_hard = U(pi+) - E[U | hard prompt] where
the feedback is biased and G_easy on the easy prompts, the control (U(pi+) is 1 on both strata). The common pressure axis is d = sqrt(KL(pi || pi_ref)) (exact KL along the
samples; best-of-n: exact KL of the best-of-n law on the empirical sample law). Per seed, G = a + b d
by least squares; across seeds, means with 90 % bootstrap intervals and one-sided tests
(``llm_stats``). Curves over seeds are drawn as medians with the range over seeds.
"""

from __future__ import annotations

import math

import numpy as np

from murphyjax import theory
from murphyjax.align import tasks
from murphyjax.bandits.diagnostics import quantile_summary
from murphyjax.experiments.llm import stats as S

QUANTS = ("proxy", "true", "hacked", "proxy_n", "true_n", "gap", "G", "G_hard", "G_easy", "hacked_hard", "hacked_easy", "d",
          "kl_exact", "kl_k1", "kl_k3", "drift")
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
            best = rm.get("best_utility", tasks.best_utility(tasks.TaskConfig(kind=task)))
            sweep = rec["sweep"]
            tag = "" if not (sweep.get("kl_coef") is not None or sweep.get("beta") is not None) else \
                (f"kl_coef={sweep['kl_coef']:g}" if sweep.get("kl_coef") is not None else f"beta={sweep['beta']:g}")
            for p in rec["curve"]:
                kl = _nan(p.get("kl_exact"))
                r = {"task": task, "method": rec["method"], "variant": rec["variant"], "channel": rec["channel"],
                     "sweep": tag, "seed": rec["seed"],
                     "pressure_name": rec["pressure"], "pressure": p["pressure"], "proxy": p["proxy"], "true": p["true"],
                     "hacked": p["hacked"], "kl_exact": kl, "kl_k1": _nan(p.get("kl_k1")), "kl_k3": _nan(p.get("kl_k3")),
                     "kl_bound": _nan(p.get("kl_bound")), "drift": _nan(p.get("drift")), "drift_se": _nan(p.get("drift_se")),
                     "true_hard": _nan(p.get("true_hard")), "true_easy": _nan(p.get("true_easy")),
                     "hacked_hard": _nan(p.get("hacked_hard")), "hacked_easy": _nan(p.get("hacked_easy"))}
                r["d"] = math.sqrt(max(kl, 0.0)) if math.isfinite(kl) else float("nan")
                r["proxy_n"] = (r["proxy"] - ref["proxy"]) / ps if ps > 0 else float("nan")
                r["true_n"] = (r["true"] - ref["true"]) / ts if ts > 0 else float("nan")
                r["gap"] = r["proxy_n"] - r["true_n"]
                r["G"] = best - r["true"]
                r["G_hard"], r["G_easy"] = best - r["true_hard"], best - r["true_easy"]
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


def seed_summaries(rows) -> dict:
    """{(task, method, variant): {seed: llm_stats.seed_summary}} over the runs without a sweep setting."""
    out = {}
    for (task, method, variant, seed), grp in _groups([r for r in rows if not r["sweep"]],
                                                      ("task", "method", "variant", "seed")).items():
        out.setdefault((task, method, variant), {})[seed] = S.seed_summary(grp)
    return out


GATE_FAILED = "gate failed"
JUDGE_AT_CHANCE = "judge at chance"  # an AI judge no better than chance on the easy pairs: its labels are noise


def method_table(rows, rms_queries: dict, gates: dict | None = None) -> list[dict]:
    """Per (task, method, variant): the slopes and intercepts of G = a + b d and of G_hard and G_easy, the
    peak true utility and where (d), the final true utility and G, each a mean over seeds with its 90 %
    Student t interval (lo, hi), the one-sided p-values of "G grows with pressure" (p_grows, p_grows_hard,
    p_grows_easy) and their verdicts (grows, grows_hard, grows_easy); the largest d reached (d_max) and
    the proxy-optimal policy's d* from the gates (``gates``: {(task, channel, seed): gate record}). Where
    the gate of any seed's reward model failed, every verdict reads "gate failed", and where the AI judge
    that labelled the pairs is at chance on the easy pairs, "judge at chance": such runs are no evidence."""
    gates = gates or {}
    out = []
    for (task, method, variant), per in sorted(seed_summaries(rows).items()):
        st = S.summarise(list(per.values()))
        grp = [r for r in rows if (r["task"], r["method"], r["variant"]) == (task, method, variant)]
        g = [gates.get((task, grp[0].get("channel"), sd)) for sd in sorted(per)]
        have = [x for x in g if x is not None]
        gate = "none" if not have else "pass" if len(have) == len(g) and all(x["passed"] for x in have) else "fail"
        if gate == "fail":
            st.update({k: GATE_FAILED for k in ("grows", "grows_hard", "grows_easy")})
        elif any(x.get("judge_at_chance") for x in have):
            st.update({k: JUDGE_AT_CHANCE for k in ("grows", "grows_hard", "grows_easy")})
        d_star = float(np.mean([x["d_star"] for x in have])) if have else float("nan")
        out.append({"task": task, "method": method, "label": LABEL[method], "variant": variant,
                    "pressure_name": grp[0]["pressure_name"], **st, "d_star": d_star, "gate": gate,
                    "labels": rms_queries.get((task, min(per), method, variant), float("nan"))})
    return out


def prompt_intervals(results: dict, resamples: int = 1000, level: float = S.LEVEL, seed: int = 0) -> dict:
    """The paired bootstrap over evaluation prompts, beside the Student t interval over seeds: every
    evaluation of a run uses the same prompts and sampling keys, so resampling the prompts (once, the
    same resample for every point and every seed) resamples whole curves. Per (task, method, variant):
    the ``level`` percentile interval of the mean over seeds of the slope of G and of G_hard against d
    (``slope_prompts_lo/hi``, ``slope_hard_prompts_lo/hi``). Runs without per-prompt values are skipped."""
    out = {}
    q = (1 - level) / 2
    for task, res in results.items():
        groups = {}
        for rec in res["runs"]:
            if any(v is not None for v in rec["sweep"].values()):
                continue
            rm = res["rms"][f"{rec['channel']}_s{rec['seed']}"]
            pts = rec["curve"]
            if "hard_by_prompt" not in rm or not all("true_by_prompt" in p for p in pts):
                continue
            groups.setdefault((task, rec["method"], rec["variant"]), []).append((rm, rec, pts))
        for key, runs in groups.items():
            hard = np.asarray(runs[0][0]["hard_by_prompt"], bool)
            idx = np.random.default_rng(seed).integers(0, len(hard), (resamples, len(hard)))
            w = hard[idx].astype(float)  # (B, M) hard prompts of each resample
            slopes, slopes_hard = [], []
            for rm, rec, pts in runs:
                best = rm.get("best_utility", 1.0)
                T = np.asarray([p["true_by_prompt"] for p in pts], float)  # (points, M)
                d = np.sqrt(np.maximum([p.get("kl_exact", math.nan) for p in pts], 0.0))
                Tb = T[:, idx]  # (points, B, M)
                G = best - Tb.mean(-1)
                Gh = best - (Tb * w).sum(-1) / np.maximum(w.sum(-1), 1)
                dc = d - d.mean()
                if not np.ptp(d) > 0:
                    continue
                slopes.append((dc[:, None] * (G - G.mean(0))).sum(0) / (dc ** 2).sum())
                slopes_hard.append((dc[:, None] * (Gh - Gh.mean(0))).sum(0) / (dc ** 2).sum())
            if not slopes:
                continue
            m, mh = np.mean(slopes, 0), np.mean(slopes_hard, 0)
            out[key] = {"slope_prompts_lo": float(np.quantile(m, q)), "slope_prompts_hi": float(np.quantile(m, 1 - q)),
                        "slope_hard_prompts_lo": float(np.quantile(mh, q)),
                        "slope_hard_prompts_hi": float(np.quantile(mh, 1 - q)), "prompts": int(len(hard))}
    return out


def gate_index(results: dict) -> dict:
    """{(task, channel, seed): gate record} of every stored gate."""
    return {(task, g["channel"], g["seed"]): g for task, res in results.items() for g in res.get("gates", {}).values()}


def intervention_table(rows) -> list[dict]:
    """Each intervention against the base run of the same method on the same seeds: change of slope, of
    intercept, of G at matched KL and of the final G (variant minus base; mean, 90 % interval, one-sided
    p of a decrease, verdict), and whether G still grows with pressure under the intervention."""
    per = seed_summaries(rows)
    curves_by = _groups([r for r in rows if not r["sweep"]], ("task", "method", "variant", "seed"))
    out = []
    for (task, method, variant), v in sorted(per.items()):
        if variant == "base" or (task, method, "base") not in per:
            continue
        b = per[(task, method, "base")]
        row = {"task": task, "method": method, "variant": variant}
        for key in ("slope", "intercept", "final_G"):
            e = S.paired_effect(b, v, key)
            row.update({f"{key}_diff": e["diff"], f"{key}_lo": e["lo"], f"{key}_hi": e["hi"],
                        f"{key}_p_lower": e["p_lower"], f"{key}_lowers": e["lowers"]})
            row["seeds"] = e["seeds"]
        matched = {s: S.matched_G(curves_by[(task, method, "base", s)], curves_by[(task, method, variant, s)])
                   for s in sorted(set(b) & set(v))}
        e = S.paired_effect({s: {"G": m[0]} for s, m in matched.items()}, {s: {"G": m[1]} for s, m in matched.items()}, "G")
        row.update(matched_G_diff=e["diff"], matched_G_lo=e["lo"], matched_G_hi=e["hi"], matched_G_p_lower=e["p_lower"],
                   matched_G_lowers=e["lowers"])
        st = S.summarise(list(v.values()))
        row.update(still_grows=st["grows"], p_grows=st["p_grows"])
        out.append(row)
    return out


def gao_fits(rows, resamples: int = 400) -> list[dict]:
    """Gao et al. forms fitted to the true-utility gain vs d (pooled seeds): bon for best-of-n, rl otherwise;
    90 % intervals of (a, b) by resampling seeds; the fitted peak is reported only inside the measured
    range of d (``peak_in_data``)."""
    out = []
    base = [r for r in rows if not r["sweep"] and r["variant"] == "base"]
    for (task, method), grp in sorted(_groups(base, ("task", "method")).items()):
        by_seed = list(_groups(grp, ("seed",)).values())

        def fit(groups):
            d = np.asarray([g["d"] for s in groups for g in s], float)
            y = np.asarray([g["true_n"] for s in groups for g in s], float)
            ok = np.isfinite(d) & np.isfinite(y)
            return theory.fit_gao(d[ok], y[ok], "bon" if method == "bon" else "rl") if ok.sum() >= 3 else None
        f = fit(by_seed)
        if f is None:
            continue
        rng = np.random.default_rng(0)
        boot = [fit([by_seed[i] for i in rng.integers(0, len(by_seed), len(by_seed))]) for _ in range(resamples)] \
            if len(by_seed) >= 2 else []
        ab = np.asarray([(g["a"], g["b"]) for g in boot if g is not None]).reshape(-1, 2)
        q = lambda k: (float(np.quantile(ab[:, k], 0.05)), float(np.quantile(ab[:, k], 0.95))) if len(ab) else (np.nan,) * 2  # noqa: E731
        dmax = float(np.nanmax([g["d"] for g in grp]))
        pd = f["peak"]["d"]
        inside = bool(np.isfinite(pd) and pd <= dmax)
        out.append({"task": task, "method": method, "form": "bon" if method == "bon" else "rl", "a": f["a"],
                    "a_lo": q(0)[0], "a_hi": q(0)[1], "b": f["b"], "b_lo": q(1)[0], "b_hi": q(1)[1], "r2": f["r2"],
                    "peak_d_fit": pd if inside else float("nan"), "peak_value_fit": f["peak"]["value"] if inside else float("nan"),
                    "peak_in_data": inside, "d_max": dmax, "points": sum(len(s) for s in by_seed), "seeds": len(by_seed)})
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
                         "flagger_tau": rm.get("flagger_tau"), "flagger_phi": rm.get("flagger_phi"),
                         "audit_prompts": rm.get("audit_prompts"),
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


def weights_table(results: dict) -> list[dict]:
    """Which weights every finished run used against the weights the folder holds now: a resume retrains
    the reference and the reward models from their seeds, and a retraining that gives other bits leaves the
    earlier runs on the earlier weights (the same recipe and seed, kept, and marked: ``ref_same`` /
    ``rm_same`` False)."""
    out = []
    for task, r in results.items():
        ref_fp = (r.get("reference") or {}).get("fingerprint")
        for run in r["runs"]:
            rm_fp = r["rms"].get(f"{run['channel']}_s{run['seed']}", {}).get("fingerprint")
            out.append({"task": task, "method": run["method"], "variant": run["variant"], "seed": run["seed"],
                        "ref_fingerprint": run.get("ref_fingerprint"), "rm_fingerprint": run.get("rm_fingerprint"),
                        "ref_same": run.get("ref_fingerprint") == ref_fp, "rm_same": run.get("rm_fingerprint") == rm_fp})
    return out


def queries(results: dict) -> dict:
    """Labels spent per (task, seed, method, variant) from the channel records."""
    from murphyjax.experiments.llm.methods import channel_for

    out = {}
    for task, res in results.items():
        for rec in res["runs"]:
            rm = res["rms"][f"{channel_for(rec['method'], rec['variant'])}_s{rec['seed']}"]
            out[(task, rec["seed"], rec["method"], rec["variant"])] = rm["queries"]
    return out
