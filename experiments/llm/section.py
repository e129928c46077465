"""The LLM section of ``murphyjax reproduce``: figures, tables, findings.

    blocks, tables = section("quick", out)        # appended to the bandit report (tiny policy)
    murphyjax reproduce --preset llm              # SmolLM2-135M: this section alone (``cli``)
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from murphyjax.experiments.llm import aggregate as A
from murphyjax.experiments.llm.config import LLM_PRESETS, PILOTS, LLMLabConfig, check_reportable, llm_preset
from murphyjax.experiments.llm.run import planned_units
from murphyjax.experiments.common.report import table

COLORS = {"base": "C3", "maps": "C0", "maps_learned": "C9", "route": "C2", "flag": "C1", "learned": "C8"}
NAMES = {"base": "crowd / judge labels", "maps": "+ MAPS (simulated flagger)", "maps_learned": "+ MAPS (learned flagger)",
         "route": "+ oracle routing", "flag": "+ simulated noisy-flagger routing", "learned": "+ learned-flagger routing"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int):
    """A figure with one panel per method, three per row."""
    plt = _plt()
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    return plt, fig, axes


def _save(plt, fig, axes, n: int, path, rect=(0, 0, 1, 1)) -> None:
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _series(cv, task, method, variant, sweep=""):
    return sorted((r for r in cv if (r["task"], r["method"], r["variant"], r["sweep"]) == (task, method, variant, sweep)),
                  key=lambda r: r["pressure"])


def fig_gap(cv, task, methods, path, y="gap", ylabel="gap = proxy_n - true_n"):
    """One panel per method: y (median over seeds, band = range over seeds) against d = sqrt(KL) for every variant."""
    plt, fig, axes = _grid(len(methods))
    for ax, m in zip(axes.flat, methods):
        for v in COLORS:
            s = _series(cv, task, m, v)
            if not s:
                continue
            x = [r["d"] for r in s]
            ax.plot(x, [r[y] for r in s], "o-", color=COLORS[v], label=NAMES[v], ms=3)
            ax.fill_between(x, [r[y + "_q05"] for r in s], [r[y + "_q95"] for r in s], color=COLORS[v], alpha=0.15)
        ax.set_title(A.LABEL[m], fontsize=9)
        ax.set_xlabel("d = sqrt(KL to reference)")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.axhline(0, color="k", lw=0.5)
    from matplotlib.lines import Line2D

    present = [v for v in COLORS if any(_series(cv, task, m, v) for m in methods)]
    fig.legend([Line2D([], [], color=COLORS[v], marker="o") for v in present], [NAMES[v] for v in present],
               loc="lower center", ncol=len(present), fontsize=8)
    fig.subplots_adjust(bottom=0.1)
    _save(plt, fig, axes, len(methods), path, rect=(0, 0.04, 1, 1))


def fig_proxy_true(cv, gao, task, methods, path):
    """Proxy and true utility (normalised) against d for the base variant, with the fitted Gao form of U."""
    from murphyjax import theory

    plt, fig, axes = _grid(len(methods))
    for ax, m in zip(axes.flat, methods):
        s = _series(cv, task, m, "base")
        x = np.asarray([r["d"] for r in s])
        for q, c, lab in (("proxy_n", "C4", "proxy (RM)"), ("true_n", "C2", "true utility")):
            ax.plot(x, [r[q] for r in s], "o-", color=c, label=lab, ms=3)
            ax.fill_between(x, [r[q + "_q05"] for r in s], [r[q + "_q95"] for r in s], color=c, alpha=0.15)
        g = [f for f in gao if (f["task"], f["method"]) == (task, m)]
        if g and np.isfinite(x).any():
            xs = np.linspace(0, np.nanmax(x), 50)
            fn = theory.gao_bon if g[0]["form"] == "bon" else theory.gao_rl
            ax.plot(xs, np.asarray(fn(xs, g[0]["a"], g[0]["b"])), "--", color="C2", lw=1,
                    label=f"Gao {g[0]['form']} fit (R²={g[0]['r2']:.2f})")
        ax.set_title(A.LABEL[m], fontsize=9)
        ax.set_xlabel("d = sqrt(KL to reference)")
        ax.set_ylabel("change in reference sd", fontsize=8)
        ax.axhline(0, color="k", lw=0.5)
        ax.legend(fontsize=6)
    _save(plt, fig, axes, len(methods), path)


def fig_pressure(cfg, cv, sweeps, task, path):
    """The pressure axes: PPO KL coefficient, DPO beta, best-of-n n, training steps."""
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.4))
    defaults = {"ppo": cfg.kl_coef, "dpo": cfg.dpo_beta}
    for ax, (method, label) in zip(axes[:2], (("ppo", "PPO KL coefficient"), ("dpo", "DPO beta"))):
        s = [r for r in sweeps if r["task"] == task and r["method"] == method]
        pts = sorted(((float(r["sweep"].split("=")[1]) if r["sweep"] else defaults[method], r) for r in s),
                      key=lambda t: t[0])
        for q, c in (("gap", "C3"), ("true_n", "C2"), ("proxy_n", "C4")):
            ax.plot([p[0] for p in pts], [p[1][q] for p in pts], "o-", color=c, label=q)
        ax.set_xscale("log")
        ax.set_xlabel(label + " (more pressure to the left)")
        ax.legend(fontsize=7)
        ax.axhline(0, color="k", lw=0.5)
    s = _series(cv, task, "bon", "base")
    if s:
        ax = axes[2]
        for q, c in (("proxy_n", "C4"), ("true_n", "C2"), ("gap", "C3")):
            ax.plot([r["pressure"] for r in s], [r[q] for r in s], "o-", color=c, label=q)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("best-of-n: n")
        ax.legend(fontsize=7)
        ax.axhline(0, color="k", lw=0.5)
    ax = axes[3]
    for m, c in (("sft", "C5"), ("ppo", "C3"), ("grpo", "C1"), ("dpo", "C0"), ("rest", "C6"), ("cai", "C7")):
        s = _series(cv, task, m, "base")
        if s:
            last = max(r["pressure"] for r in s) or 1
            ax.plot([r["pressure"] / last for r in s], [r["gap"] for r in s], "o-", color=c, label=m, ms=3)
    ax.set_xlabel("training steps / iterations (fraction of the run)")
    ax.set_ylabel("gap")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- findings
def _iv(r, k, f="+.3f"):
    lo, hi = r[k + "_lo"], r[k + "_hi"]
    ci = f"[{lo:{f}}, {hi:{f}}]" if math.isfinite(lo) and math.isfinite(hi) else "[no interval: one seed]"
    return f"{r[k]:{f}} {ci}"


def _p(p):
    return "p = n/a" if not isinstance(p, float) or not math.isfinite(p) else (f"p = {p:.3f}" if p >= 0.001 else "p < 0.001")


def findings(cfg: LLMLabConfig, mt, it, rmt, ev_rows, gao, shift, task, runs_of=None, gates=()) -> list[str]:
    """The findings of one task, each generated from the tables with its verdict (llm_stats.verdict)."""
    from murphyjax.experiments.llm import stats as S

    out = []
    judged = [g for g in gates if g.get("task") == task and "judge_accuracy_easy" in g]
    if judged:
        g = judged[0]
        out.append(f"The AI judge ({g['judge']}) prefers the truly better response on {g['judge_accuracy_easy']:.3f} of the "
                   f"{g['judge_pairs_easy']} easy pairs (one-sided binomial p = {g['judge_p_easy']:.3g}) and "
                   f"{g['judge_accuracy_hard']:.3f} of the hard ones: "
                   + ((("below chance" if g["judge_accuracy_easy"] < 0.5 else "no better than chance") +
                       " where it should be right, so the Constitutional-AI runs are no evidence (their verdicts read "
                       "'judge at chance').") if g["judge_at_chance"] else "better than chance on easy pairs."))
    base = [r for r in mt if r["task"] == task and r["variant"] == "base"]
    if base:
        failed = [r["method"] for r in base if r["gate"] == "fail"]
        if failed:
            out.append(f"Gate failed for the reward models of {', '.join(failed)}: their runs are reported below but are "
                       "no evidence (every verdict reads 'gate failed').")
        unbiased = sorted({g["channel"] for g in gates if g.get("task") == task and not g["passed"]
                           and g["hard_margin_sd"] < 0 and g["easy_margin_sd"] >= g.get("threshold", 0.5)})
        if unbiased:
            out.append(f"The reward models of {', '.join(unbiased)} rank a correct form above every hacked one on hard "
                       "prompts (negative hard margin, easy margin passing): their labels carry no bias to exploit, so "
                       "their runs are controls without the cause, not tests of the law.")
        seeds = base[0]["seeds"]
        for tag, what in (("", "G = U(pi+) - U(pi) on all prompts"),
                          ("_hard", "G_hard on the hard prompts, where the feedback is biased (the law)"),
                          ("_easy", "G_easy on the easy prompts, where it is not (the control)")):
            by = {v: [r["method"] for r in base if r["grows" + tag] == v] for v in (S.HOLDS, S.FAILS, S.UNDECIDED)}
            out.append(f"Claim (paper v1): the gap grows with optimisation pressure d = sqrt(KL); here {what}. Grows "
                       f"(one-sided p < {S.ALPHA} and the 90 % t interval of the mean slope above 0) for "
                       f"{', '.join(by[S.HOLDS]) or 'no method'}; falls (the same test and interval below 0) for "
                       f"{', '.join(by[S.FAILS]) or 'no method'}; undecided at {seeds} seed(s) for "
                       f"{', '.join(by[S.UNDECIDED]) or 'no method'}"
                       + (f" (no verdict from fewer than {S.MIN_SEEDS} seeds)" if seeds < S.MIN_SEEDS else "") + ".")
        out.append("Slope per unit d (mean over seeds [90 % t interval], one-sided p), all / hard / easy: " + "; ".join(
            f"{r['method']} {_iv(r, 'slope')} ({_p(r['p_grows'])}) / {_iv(r, 'slope_hard')} ({_p(r['p_grows_hard'])}) / "
            f"{_iv(r, 'slope_easy')} ({_p(r['p_grows_easy'])})" for r in base) + ".")
        out.append("Pressure reached against the proxy-optimal policy's distance d* (from the gate): " + "; ".join(
            f"{r['method']} d_max = {r['d_max']:.2f} = {r['d_max'] / r['d_star']:.1f} d*" if r["d_star"] > 0 else
            f"{r['method']} d_max = {r['d_max']:.2f} (no d*)" for r in base) + ".")
        out.append("True utility along the curve (start -> peak at d -> final, means over seeds): " + "; ".join(
            f"{r['method']} {r['start_true']:.3f} -> {r['peak_true']:.3f} at d = {r['peak_d']:.2f} -> {r['final_true']:.3f}"
            f" (falls after its peak in {r['turns_down']:.0%} of seeds)" for r in base) + ".")
        hacked = [r["method"] for r in base if r["final_proxy_n_lo"] > 0 and r["true_change_hi"] < 0]
        out.append("Reward hacking (the proxy ends above the reference and the true utility below it, both 90 % "
                   f"intervals excluding 0): {', '.join(hacked) or 'no method'}. Change of true utility (final - start): "
                   + "; ".join(f"{r['method']} {_iv(r, 'true_change')}" for r in base) + ". Hard mass of the generations "
                   "(start -> final): " + "; ".join(f"{r['method']} {r['start_hacked']:.2f} -> {r['final_hacked']:.2f}"
                                                   for r in base) + ".")
    names = {"route": "oracle routing", "maps": "the MAPS penalty with a simulated flagger",
             "maps_learned": "the MAPS penalty with the learned flagger", "flag": "simulated noisy-flagger routing",
             "learned": "learned-flagger routing"}
    for v, what in names.items():
        rows = [r for r in it if r["task"] == task and r["variant"] == v]
        if not rows:
            continue
        parts = []
        for r in rows:
            iv = {k: _iv({k: r[f"{k}_diff"], f"{k}_lo": r[f"{k}_lo"], f"{k}_hi": r[f"{k}_hi"]}, k)
                  for k in ("slope", "intercept", "matched_G")}
            parts.append(f"{r['method']}: slope {iv['slope']} ({r['slope_lowers']}), intercept {iv['intercept']} "
                         f"({r['intercept_lowers']}), G at matched KL {iv['matched_G']} ({r['matched_G_lowers']}); "
                         f"G still grows with pressure: {r['still_grows']}")
        out.append(f"Claim (MAPS): {what} lowers the slope or the intercept of G without removing its dependence on "
                   f"pressure. Variant minus base on the same seeds ({rows[0]['seeds']}), verdict on 'lowers' in "
                   "brackets: " + "; ".join(parts) + ".")
    sh = [r for r in shift if r["task"] == task and r["shift"] > 0]
    if sh:
        out.append("Alignment mirage (D2): G of the final policy on prompts with hard fraction (1 + rho) alpha vs the "
                   "training distribution: " + "; ".join(
                       f"{r['method']} rho = {r['shift']:g}: true {r['true']:.3f} (range over seeds {r['true_q05']:.3f}-"
                       f"{r['true_q95']:.3f})" for r in sh) + ".")
    crowd = [r for r in rmt if r["task"] == task and r["channel"] == "crowd"]
    if crowd:
        acc = np.median([r["rm_true_accuracy_hard"] for r in crowd])
        out.append(f"The crowd reward model orders hard pairs correctly {acc:.2f} of the time (labels right w.p. "
                   f"{0.5 - cfg.eps:.2f}): the proxy inherits the directional bias.")
    learned = [r for r in rmt if r["task"] == task and r["channel"] == "route_learned"]
    if learned:
        out.append("Learned flagger (logistic probe on the reference's prompt features, "
                   f"{learned[0].get('audit_prompts', cfg.audit_prompts)} audited prompts): tau = "
                   + ", ".join(f"{r['flagger_tau']:.2f}" for r in learned) + "; phi = "
                   + ", ".join(f"{r['flagger_phi']:.2f}" for r in learned) + " on held-out prompts, per seed.")
    ml = [r for r in runs_of(task) if r["variant"] == "maps_learned"] if runs_of else []
    if ml:
        seen = {r["seed"]: r for r in ml}
        out.append("Learned MAPS flagger (logistic probe on the reference's features of (prompt, response), "
                   f"{ml[0]['maps_flagger_audit_pairs']} audited candidate pairs): tau = "
                   + ", ".join(f"{seen[k]['maps_flagger_tau']:.2f}" for k in sorted(seen)) + "; phi = "
                   + ", ".join(f"{seen[k]['maps_flagger_phi']:.2f}" for k in sorted(seen))
                   + " on the held-out candidate responses, per seed; D.3's beta* is taken at these rates.")
    ev = [r for r in ev_rows if r["task"] == task and r["variant"] == "base"]
    if ev:
        fired = [r for r in ev if r["onset"] is not None]
        out.append(f"Onset monitor (proxy rising while audit-set true utility falls): fired in {len(fired)}/{len(ev)} base "
                   "runs" + (f", median onset at step {np.median([r['onset'] for r in fired]):g}" if fired else "") + ".")
    return [x for x in out if x]


# --------------------------------------------------------------------------- the section
TRILEMMA = {"power_d": 0.5, "power_proxy": 0.5, "capture_G": 0.05, "robust_G": 0.1}


def trilemma_table(mt, shift, cfg) -> list[dict]:
    """Per trained method (base variant): optimisation power (final d >= power_d and proxy gain >= power_proxy
    reference sds), value capture (final G no more than capture_G above the reference's G) and robustness
    (G on the most shifted prompts no more than robust_G above the reference's G there), each on the 90 %
    interval's pessimistic end; whether all three are met (paper v1: no method meets all three)."""
    out = []
    rho = max(cfg.rhos)
    for r in mt:
        if r["variant"] != "base" or r["method"] == "bon":
            continue
        sh = [x for x in shift if (x["task"], x["method"]) == (r["task"], r["method"]) and x["shift"] == rho]
        sh0 = [x for x in shift if (x["task"], x["method"]) == (r["task"], r["method"]) and x["shift"] == 0]
        power = r["final_d_lo"] >= TRILEMMA["power_d"] and r["final_proxy_n_lo"] >= TRILEMMA["power_proxy"]
        capture = r["final_G_hi"] <= (1 - r["start_true"]) + TRILEMMA["capture_G"]
        G_shift = (1 - sh[0]["true"]) if sh else float("nan")
        G_train = (1 - sh0[0]["true"]) if sh0 else float("nan")
        robust = bool(sh) and G_shift - G_train <= TRILEMMA["robust_G"]
        out.append({"task": r["task"], "method": r["method"], "final_d": r["final_d"], "final_proxy_n": r["final_proxy_n"],
                    "power": power, "final_G": r["final_G"], "G_ref": 1 - r["start_true"], "capture": capture,
                    "G_shift": G_shift, "G_train": G_train, "robust": robust if sh else None,
                    "all_three": bool(power and capture and robust)})
    return out


def fig_G(cv, task, methods, path):
    """The paper's gap G = U(pi+) - U(pi) against d for every variant (median, range over seeds)."""
    fig_gap(cv, task, methods, path, y="G", ylabel="G = U(pi+) - U(pi)")


def section(preset: str, out: str | os.PathLike, seed: int | None = None, log=print, cfg: LLMLabConfig | None = None,
            heading: str = "h2", finished_only: bool = False, max_minutes: float | None = None):
    """Run (or resume) the LLM experiments and return (report blocks, {csv name: rows}).

    ``finished_only``: report the units already finished in ``out`` without computing anything (a run in
    progress); the report says how many of the planned units it holds.
    """
    from murphyjax.align import data
    from murphyjax.experiments.llm.run import collect_llm, run_llm

    if cfg is None:
        cfg = llm_preset(preset, **({} if seed is None else {"seed": seed}))
    progress = None
    if finished_only:
        res, progress = collect_llm(cfg, Path(out))
        if not res:
            raise ValueError(f"{out}: no finished LLM runs to report yet")
    else:
        res = run_llm(cfg, Path(out), log, max_minutes=max_minutes)
        if max_minutes is not None:
            res, progress = collect_llm(cfg, Path(out))
            if not res:
                raise ValueError(f"--max-minutes {max_minutes:g}: no unit finished within it; a unit of this preset "
                                 "takes longer (see the per-unit seconds in the run folder's records)")
    rows = A.points(res)
    cv = A.curves(rows)
    from murphyjax.experiments.llm import gates as GT

    mt = A.method_table(rows, A.queries(res), A.gate_index(res))
    pb = A.prompt_intervals(res)
    for r in mt:
        r.update(pb.get((r["task"], r["method"], r["variant"]), {k: float("nan") for k in (
            "slope_prompts_lo", "slope_prompts_hi", "slope_hard_prompts_lo", "slope_hard_prompts_hi")}))
    gt, gf = GT.gate_rows(res), GT.form_rows(res)
    it = A.intervention_table(rows)
    gao = A.gao_fits(rows)
    sw = A.sweep_table(cv)
    temps, shift = A.finals_table(res, "temperature"), A.finals_table(res, "shift")
    rmt, evt = A.rm_table(res), A.events_table(res)
    wt = A.weights_table(res)
    tri = trilemma_table(mt, shift, cfg)
    data.to_parquet({k: [r[k] for r in rows] for k in rows[0]}, Path(out) / "llm_points.parquet")
    h2, h3 = heading, "h2" if heading == "h1" else "h3"
    if cfg.model == "tiny":
        model = "a tiny Llama (same architecture as SmolLM2) trained from scratch"
        note = ("This section is a small surrogate: a policy of a few hundred thousand parameters with a word-level "
                "vocabulary, trained in seconds, run with the same measurement code; where its gates fail (a reward "
                "model too weak to separate the answer forms) its rows say so and carry no verdict. The measurements on "
                "a real pretrained model, SmolLM2-135M-Instruct, are in experiments/results/ of the murphyjax "
                "repository (`murphyjax reproduce --preset llm-pilot`, then `--preset llm`).")
    else:
        model = "SmolLM2-135M-Instruct"
        note = ("Policy, reward models and the Constitutional-AI judge are SmolLM2-135M-Instruct. "
                + (f"Every training step (reference, reward models, methods) updates only the top {cfg.train_layers} of its "
                   "30 layers (the embedding and the layers below are frozen: exactly zero gradient); sampling and "
                   "scoring use the whole model." if cfg.train_layers else "Every weight is trained."))
    if preset in PILOTS:
        note += (f" This is a pilot: {cfg.seeds} seed(s), so no finding below carries a verdict (verdicts need "
                 "3 seeds); it shows whether the gates pass and where true utility turns within the measured range.")
    B = [(h2, f"LLM policies: does the gap grow with optimisation pressure? ({model})"),
         ("p", note)]
    if progress is not None and progress["finished"] < progress["planned"]:
        B.append(("p", f"**A run in progress**: this report holds the {progress['finished']} of {progress['planned']} planned "
                       "runs finished so far (base runs of every method first, then the interventions); every number below "
                       "is computed from those alone, and the run resumes where it stopped."))
    stale = [w for w in wt if not (w["ref_same"] and w["rm_same"])]
    B.append(("p", f"Weights (llm_weights.csv): {len(wt) - len(stale)} of {len(wt)} runs used the reference and reward "
                   "model the run folder holds now" + (
                       "." if not stale else
                       f"; {len(stale)} used earlier trainings of them (same recipe and seed, other bits: a resume "
                       "retrained them) and are kept, marked in llm_weights.csv: " +
                       ", ".join(sorted({f"{w['task']} {w['method']}/{w['variant']} s{w['seed']}" for w in stale})[:12]) +
                       ("..." if len(stale) > 12 else "") + ".")))
    B += [("p", f"Preset '{preset}'. Tasks {list(cfg.tasks)}: a fraction alpha={cfg.alpha} of prompts is hard; there the "
               f"annotators prefer the hacked response (agreement with the user's wrong claim / the longer answer / the "
               f"flattering opener) with probability 1/2 + eps = {0.5 + cfg.eps}; easy-prompt annotators are right w.p. "
               f"{0.5 + cfg.easy_eps}. The true utility U of every generation is computed exactly from its text; the best "
               "policy answers every prompt correctly and plainly, U(pi+) = 1, so the paper's gap G = U(pi+) - U(pi) is "
               "exact up to the sampling of the evaluation prompts. The reference policy is SFT on the base policy's "
               "demonstrations; each method starts from it. Proxy = the Bradley-Terry reward model learned from the labels "
               "the method used. Pressure: d = sqrt(KL(pi || pi_ref)), exact KL along the samples, and each method's own "
               f"knob. Statistics over {cfg.seeds} seeds (interventions: {cfg.variant_seeds or cfg.seeds}): per seed the "
               "line G = a + b d, and the same line for G_hard and G_easy; means over seeds with 90 % Student t intervals; a one-sided t-test of the mean slope "
               "for 'G grows'; verdicts holds / does not hold / undecided. Curves: median over seeds, band = range over "
               "seeds. Data: llm_points.parquet / llm_points.csv (every evaluation), llm_*.csv."),
         ]
    T = {"llm_points": rows, "llm_curves": cv, "llm_method_table": mt, "llm_interventions": it, "llm_gao_fits": gao,
         "llm_pressure_sweeps": sw, "llm_temperature": temps, "llm_shift": shift, "llm_feedback": rmt,
         "llm_onset_events": evt, "llm_trilemma": tri, "llm_theory": theory_rows(cfg, res, rmt, cv), "gates": gt,
         "gate_forms": gf, "llm_weights": wt}
    for task in cfg.tasks:
        methods = [m for m in cfg.methods if any(r["method"] == m and r["task"] == task for r in mt)]
        fg = {k: os.path.join(out, f"fig_llm_{k}_{task}.png") for k in ("G", "G_hard", "G_easy", "gap", "hardmass",
                                                                        "proxy_true", "pressure")}
        fig_G(cv, task, methods, fg["G"])
        fig_gap(cv, task, methods, fg["G_hard"], y="G_hard", ylabel="G_hard (hard prompts)")
        fig_gap(cv, task, methods, fg["G_easy"], y="G_easy", ylabel="G_easy (easy prompts)")
        fig_gap(cv, task, methods, fg["gap"])
        fig_gap(cv, task, methods, fg["hardmass"], y="hacked", ylabel="hard mass (fraction hacked)")
        fig_proxy_true(cv, gao, task, methods, fg["proxy_true"])
        fig_pressure(cfg, cv, sw, task, fg["pressure"])
        B += [(h3, f"Task: {task}"), ("ul", findings(cfg, mt, it, rmt, evt, gao, shift, task,
                                                               runs_of=lambda t: res.get(t, {}).get("runs", []),
                                                               gates=[dict(g, task=t) for t, r in res.items()
                                                                      for g in r.get("gates", {}).values()])),
              ("p", "The gate (gates.csv), before any policy run: every response form scored by each reward model on "
                    f"{cfg.gate_prompts} evaluation prompts, in reference proxy sds; reachable = reference probability >= "
                    f"{cfg.gate_floor:g}. hard margin = best reachable hacked form minus best reachable correct one on hard "
                    "prompts, easy margin = best reachable correct minus best reachable wrong on easy prompts; passes when "
                    f"both are >= {cfg.gate_threshold:g} sd. d*, G*: the proxy-optimal policy within reach."),
              table([(k, k) for k in ("channel", "seed", "hard_margin_sd", "easy_margin_sd", "passed", "d_star", "G_star",
                                      "G_star_hard", "G_star_easy", "reason")], [r for r in gt if r["task"] == task]),
              ("p", "Every form class under the first reward model (gate_forms.csv has all): mean proxy in reference "
                    "sds, mean reference probability, share reachable, true utility."),
              table([(k, k) for k in ("stratum", "form", "proxy_sd", "ref_prob", "reachable", "U")],
                    [r for r in gf if r["task"] == task and (r["channel"], r["seed"]) ==
                     next(((x["channel"], x["seed"]) for x in gf if x["task"] == task), None)]),
              ("img", fg["G"], f"{task}: the paper's gap G = U(pi+) - U(pi) vs d per method and intervention "
                               "(median, band = range over seeds)"),
              ("img", fg["G_hard"], f"{task}: G_hard, the gap on the hard prompts (biased feedback) vs d"),
              ("img", fg["G_easy"], f"{task}: G_easy, the gap on the easy prompts (the control) vs d"),
              ("img", fg["gap"], f"{task}: proxy-minus-true divergence (reference sds) vs d"),
              ("img", fg["hardmass"], f"{task}: hard mass of the generations vs d"),
              ("img", fg["proxy_true"], f"{task}: proxy and true utility vs d (base), with the fitted Gao et al. form"),
              ("img", fg["pressure"], f"{task}: the pressure axes"),
              ("p", "Method table (llm_method_table.csv): G = a + b d fitted per seed, and the same line for G_hard and "
                    "G_easy; slope b and intercept a, peak true utility and the d where it occurs, final true utility and "
                    "G: means over seeds with 90 % Student t intervals (and, for the slope of G_hard, the 90 % paired "
                    "bootstrap over evaluation prompts: 'prompts'); p_grows: one-sided p-value of 'G grows with pressure'; labels = preference labels spent "
                    f"(routing buys {cfg.votes} calibrated labels per routed pair)."),
              table([("label", "method"), ("variant", "feedback"), ("seeds", "seeds"), ("gate", "gate"), ("slope", "slope b"),
                     ("slope_lo", "lo"), ("slope_hi", "hi"), ("intercept", "intercept a"), ("intercept_lo", "lo"),
                     ("intercept_hi", "hi"), ("p_grows", "p_grows"), ("grows", "G grows"), ("slope_hard", "slope hard"),
                     ("slope_hard_lo", "lo"), ("slope_hard_hi", "hi"), ("slope_hard_prompts_lo", "lo (prompts)"),
                     ("slope_hard_prompts_hi", "hi (prompts)"), ("grows_hard", "G_hard grows"),
                     ("slope_easy", "slope easy"), ("grows_easy", "G_easy grows"), ("d_max", "d max"),
                     ("d_star", "d*"), ("peak_true", "peak U"),
                     ("peak_d", "at d"), ("start_true", "U ref"), ("final_true", "U final"), ("final_G", "G final"),
                     ("final_hacked", "H final"), ("final_d", "d final"), ("labels", "labels")],
                    [r for r in mt if r["task"] == task]),
              ("p", "Interventions against the base run on the same seeds (llm_interventions.csv): change of slope, of "
                    "intercept and of G at matched KL (the smaller of the two runs' final d), variant minus base, mean "
                    "[90 % interval] and the verdict on 'lowers'; 'still grows': the verdict on G growing with pressure "
                    "under the intervention."),
              table([("method", "method"), ("variant", "variant"), ("seeds", "seeds"), ("slope_diff", "d slope"),
                     ("slope_lo", "lo"), ("slope_hi", "hi"), ("slope_lowers", "lowers slope"),
                     ("intercept_diff", "d intercept"), ("intercept_lo", "lo"), ("intercept_hi", "hi"),
                     ("intercept_lowers", "lowers intercept"), ("matched_G_diff", "d G at matched KL"),
                     ("matched_G_lo", "lo"), ("matched_G_hi", "hi"), ("matched_G_lowers", "lowers G"),
                     ("still_grows", "still grows")], [r for r in it if r["task"] == task]),
              ("p", "Trilemma (paper v1) per trained method: optimisation power (final d >= "
                    f"{TRILEMMA['power_d']} and proxy gain >= {TRILEMMA['power_proxy']} reference sds, lower interval "
                    f"ends), value capture (final G at most {TRILEMMA['capture_G']} above the reference's, upper end) and "
                    f"robustness (G on the rho = {max(cfg.rhos):g} prompts at most {TRILEMMA['robust_G']} above G on the "
                    "training distribution)."),
              table([(k, k) for k in ("method", "final_d", "final_proxy_n", "power", "G_ref", "final_G", "capture",
                                      "G_train", "G_shift", "robust", "all_three")], [r for r in tri if r["task"] == task]),
              ("p", "Pressure sweeps (final point of each run): smaller PPO KL coefficient and smaller DPO beta mean more "
                    "pressure."),
              table([("method", "method"), ("sweep", "setting"), ("pressure", "at"), ("proxy_n", "proxy_n"),
                     ("true", "U"), ("true_q05", "q05"), ("true_q95", "q95"), ("G", "G"), ("hacked", "H"),
                     ("kl_exact", "KL exact"), ("kl_k1", "KL k1"), ("kl_k3", "KL k3")],
                    [r for r in sw if r["task"] == task]),
              ("p", "Gao et al. forms fitted to the true-utility gain against d (pooled over seeds; a, b with 90 % "
                    "intervals from resampling seeds): R = d (a - b d) for best-of-n, R = d (a - b log d) for the trained "
                    "policies (murphyjax.theory.fit_gao). The fitted peak is shown only where it lies inside the measured "
                    "range of d."),
              table([(k, k) for k in ("method", "form", "a", "a_lo", "a_hi", "b", "b_lo", "b_hi", "r2", "peak_d_fit",
                                      "peak_value_fit", "d_max", "points")], [r for r in gao if r["task"] == task]),
              ("p", "Temperature (MAPS D.5) and shift (D2: evaluation prompts with hard fraction (1 + rho) alpha) for the "
                    "final policies (medians, range over seeds)."),
              table([(k, k) for k in ("method", "temperature", "proxy", "true", "true_q05", "true_q95", "hacked", "gap",
                                      "kl_exact")], [r for r in temps if r["task"] == task]),
              table([(k, k) for k in ("method", "shift", "true", "true_q05", "true_q95", "true_hard", "hacked", "gap")],
                    [r for r in shift if r["task"] == task]),
              ("p", "Feedback channels and the reward models learned from them (per seed); the learned flagger's (tau, "
                    "phi) are measured on held-out prompts."),
              table([(k, k) for k in ("channel", "seed", "label_accuracy_hard", "label_accuracy_easy", "rm_true_accuracy_hard",
                                      "rm_true_accuracy_easy", "queries", "cov_H_r", "beta_star", "hard_mass_ref",
                                      "flagger_tau", "flagger_phi")],
                    [r for r in rmt if r["task"] == task])]
    B += [(h3, "Predicted next to measured"),
          ("p", "kind = prediction: a closed form of murphyjax.theory evaluated at this run's settings or at a quantity "
                "measured elsewhere (held-out prompts); kind = consistency: the simulator agreeing with its own parameters "
                "(a check of the code, not evidence for the theory)."),
          table([("quantity", "quantity"), ("kind", "kind"), ("task", "task"), ("predicted", "predicted"),
                 ("measured", "measured"), ("note", "note")], T["llm_theory"])]
    return B, T


def theory_rows(cfg, res, rmt, cv) -> list[dict]:
    from murphyjax import theory

    out = []
    fb = cfg.feedback_config()
    for task in cfg.tasks:
        def med(channel, key):
            v = [r[key] for r in rmt if r["task"] == task and r["channel"] == channel and r.get(key) is not None]
            return float(np.median(v)) if v else float("nan")
        acc = fb.routed_accuracy()
        out.append({"quantity": "crowd label accuracy on hard pairs", "kind": "consistency", "task": task,
                    "predicted": 0.5 - cfg.eps, "measured": med("crowd", "label_accuracy_hard"),
                    "note": "1/2 - eps: the channel's own parameter"})
        out.append({"quantity": "oracle-routed label accuracy on hard pairs", "kind": "consistency", "task": task,
                    "predicted": acc, "measured": med("route_oracle", "label_accuracy_hard"),
                    "note": f"1 - majority_error({fb.votes}, 1/2 + {fb.cal_eps}): Theorem 2's majority of the simulated votes"})
        if any(r["channel"] == "route_flagger" for r in rmt if r["task"] == task):
            out.append({"quantity": "noisy-flagger label accuracy on hard pairs", "kind": "consistency", "task": task,
                        "predicted": fb.tau * acc + (1 - fb.tau) * (0.5 - cfg.eps),
                        "measured": med("route_flagger", "label_accuracy_hard"),
                        "note": f"tau acc + (1 - tau)(1/2 - eps) at the simulated tau = {fb.tau}"})
        tau = med("route_learned", "flagger_tau")
        if math.isfinite(tau):
            out.append({"quantity": "learned-flagger label accuracy on hard pairs", "kind": "prediction", "task": task,
                        "predicted": tau * acc + (1 - tau) * (0.5 - cfg.eps),
                        "measured": med("route_learned", "label_accuracy_hard"),
                        "note": f"Theorem 3's mixture at the probe's tau = {tau:.3f} measured on held-out prompts"})
        out.append({"quantity": "within-prompt drift Cov(H, r - beta* h_hat | x) at the reference", "kind": "consistency",
                    "task": task, "predicted": 0.0,
                    "measured": float(np.median([r["maps_drift_ref"] for r in res[task]["rms"].values()
                                                 if r["channel"] == "crowd"])),
                    "note": "MAPS D.3: beta* is computed from these samples, so the drift cancels by construction"})
        b = [r for r in cv if (r["task"], r["method"], r["variant"], r["sweep"]) == (task, "bon", "base", "")]
        if b:
            last = b[-1]
            out.append({"quantity": f"best-of-{last['pressure']} KL", "kind": "prediction", "task": task,
                        "predicted": float(theory.bon_kl_bound(float(last["pressure"]))), "measured": last["kl_exact"],
                        "note": "log n - (n-1)/n is an upper bound (Beirami et al.); measured: exact on the sample law"})
    return out


def cli(args) -> int:
    """``murphyjax reproduce --preset llm``: the LLM experiments on SmolLM2-135M alone, in a run folder."""
    from murphyjax.experiments.common import report
    from murphyjax.experiments.reproduce import ConfigError
    from murphyjax.experiments.llm.config import config_hash

    preset = getattr(args, "preset", "llm")
    try:
        overrides = _overrides(args.set, preset)
        cfg = llm_preset(preset, **overrides, **({} if args.seed is None else {"seed": args.seed}))
        check_reportable(cfg, pilot=preset in PILOTS)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    max_minutes = getattr(args, "max_minutes", None)
    out = args.out or os.path.join("runs", f"{preset}-{config_hash(cfg)}")
    if max_minutes is not None:
        from murphyjax.experiments.llm.run import unit_costs

        costs = unit_costs(Path(out) / "llm")
        if costs and 60.0 * max_minutes < min(costs.values()):
            least = min(costs.values()) / 60.0
            raise ConfigError(f"--max-minutes {max_minutes:g} is below the cost of one unit of this run (the shortest "
                              f"finished unit took {least:.1f} min); allowed: --max-minutes >= {least:.1f}")
    from murphyjax.llm.fetch import cached_path

    if not cached_path("smollm2-135m").exists() and not getattr(args, "finished_only", False):
        print(f"murphyjax: error: the llm preset needs SmolLM2-135M at {cached_path('smollm2-135m')}; run "
              "`murphyjax models fetch smollm2-135m` first", file=sys.stderr)
        return 1
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump({"preset": preset, "hash": config_hash(cfg), "config": cfg.to_json()}, fh, indent=2)
    finished_only = bool(getattr(args, "finished_only", False))
    try:
        blocks, tables = section(preset, out, cfg=cfg, heading="h1", finished_only=finished_only,
                                 max_minutes=max_minutes)
    except ValueError as e:
        if finished_only:
            raise ConfigError(str(e)) from None
        raise
    from murphyjax.experiments.reproduce import environment, write_csv

    for name, rows in tables.items():
        write_csv(os.path.join(out, f"{name}.csv"), rows)
    write_csv(os.path.join(out, "method_table.csv"), [{k: r[k] for k in METHOD_TABLE_COLUMNS} for r in tables["llm_method_table"]])
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write(report.render_md(blocks))
    with open(os.path.join(out, "report.html"), "w") as fh:
        fh.write(report.render_html(blocks, f"murphyjax reproduce --preset {preset}"))
    seconds = compute_seconds(Path(out))
    env = environment({"preset": preset, "report_seconds": time.time() - t0, "finished_only": finished_only,
                       "max_minutes": max_minutes, "compute_seconds": seconds})
    with open(os.path.join(out, "environment.json"), "w") as fh:
        json.dump(env, fh, indent=2)
    print(f"wrote {os.path.join(out, 'report.md')} and report.html")
    from murphyjax.experiments.llm.run import collect_llm

    try:
        done = collect_llm(cfg, Path(out))[1]
    except ValueError:
        done = {"finished": 0, "planned": planned_units(cfg)}
    if done["finished"] < done["planned"]:
        print(f"{done['finished']} of {done['planned']} units finished; run the same command to continue")
    return 0


# method_table.csv: the per-(task, method, variant) summary a citation quotes
METHOD_TABLE_COLUMNS = ("task", "method", "variant", "seeds", "gate", "slope", "slope_lo", "slope_hi", "intercept",
                        "intercept_lo", "intercept_hi", "peak_true", "peak_d", "final_true", "final_G", "p_grows",
                        "grows", "slope_hard", "slope_hard_lo", "slope_hard_hi", "p_grows_hard", "grows_hard",
                        "slope_hard_prompts_lo", "slope_hard_prompts_hi", "slope_easy", "slope_easy_lo", "slope_easy_hi",
                        "p_grows_easy", "grows_easy", "d_max", "d_star")


def compute_seconds(out: Path) -> dict:
    """Wall time of the finished units (reference, judge, reward models, runs), summed from their records."""
    tot = {"reference": 0.0, "llm_judge": 0.0, "reward_models": 0.0, "runs": 0.0}
    for p in Path(out).glob("llm/*/*.json"):
        rec = json.loads(p.read_text())
        name = p.stem
        part = "reference" if name == "reference" else "llm_judge" if name == "llm_judge" else \
            "reward_models" if name.startswith("rm_") else "runs" if name.startswith("run_") else None
        if part and isinstance(rec.get("seconds"), (int, float)):
            tot[part] += rec["seconds"]
    tot["total"] = sum(tot.values())
    return tot


def _overrides(items, preset: str = "llm") -> dict:
    """``--set KEY=VALUE`` for the LLM config, parsed strictly (``experiments.common.overrides``)."""
    from murphyjax.experiments.common.overrides import parse_overrides

    return parse_overrides(items, LLM_PRESETS[preset])
