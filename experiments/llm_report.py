"""The LLM section of ``murphyjax reproduce``: figures, tables, findings (issue 6).

    blocks, tables = section("quick", out)        # appended to the bandit report (tiny policy)
    murphyjax reproduce --preset llm              # SmolLM2-135M: this section alone (``cli``)
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np

from murphyjax.experiments import llm_aggregate as A
from murphyjax.experiments.llm_config import LLM_PRESETS, LLMLabConfig, llm_preset
from murphyjax.experiments.report import table

COLORS = {"base": "C3", "maps": "C0", "route": "C2", "flag": "C1"}
NAMES = {"base": "crowd / judge labels", "maps": "+ MAPS flagger penalty", "route": "+ oracle routing",
         "flag": "+ noisy-flagger routing"}


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
    """One panel per method: y (median, 90 % band) against d = sqrt(KL) for every variant."""
    plt, fig, axes = _grid(len(methods))
    for ax, m in zip(axes.flat, methods):
        for v in ("base", "maps", "route", "flag"):
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

    present = [v for v in ("base", "maps", "route", "flag") if any(_series(cv, task, m, v) for m in methods)]
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
def _med(rows, **kw):
    sel = [r for r in rows if all(r.get(k) == v for k, v in kw.items())]
    return sel[0] if sel else None


def findings(cfg: LLMLabConfig, mt, rmt, ev_rows, gao, task) -> list[str]:
    out = []
    base = [r for r in mt if r["task"] == task and r["variant"] == "base"]
    if base:
        up = [r for r in base if r["final_gap"] > 0]
        down = [r for r in base if r["final_true"] < r["start_true"]]
        out.append(f"{task}: the gap (proxy minus true utility, in reference sds) ends above 0 for {len(up)}/{len(base)} "
                   f"methods; true utility ends below the reference for {len(down)}/{len(base)} "
                   f"({', '.join(r['method'] for r in down) or 'none'}), while the proxy rises for "
                   f"{sum(r['final_proxy_n'] > 0 for r in base)}/{len(base)}.")
        out.append("hard mass of the generations (fraction in the hacked mode): " + "; ".join(
            f"{r['method']} {r['start_hacked']:.2f} -> {r['final_hacked']:.2f}" for r in base) + ".")
    for v, what in (("route", "oracle routing"), ("maps", "the MAPS flagger penalty"), ("flag", "noisy-flagger routing")):
        pairs = [(b, _med(mt, task=task, method=b["method"], variant=v)) for b in base]
        pairs = [(b, x) for b, x in pairs if x]
        if pairs:
            lower = sum(x["slope"] < b["slope"] for b, x in pairs)
            better = sum(x["final_true"] > b["final_true"] for b, x in pairs)
            removed = sum(x["final_gap"] <= 0 for b, x in pairs)
            out.append(f"{what}: lowers the gap slope for {lower}/{len(pairs)} methods, raises the final true utility "
                       f"for {better}/{len(pairs)}, and brings the final gap to <= 0 for {removed}/{len(pairs)}.")
    crowd = [r for r in rmt if r["task"] == task and r["channel"] == "crowd"]
    if crowd:
        acc = np.median([r["rm_true_accuracy_hard"] for r in crowd])
        out.append(f"the crowd reward model orders hard pairs correctly {acc:.2f} of the time (labels right w.p. "
                   f"{0.5 - cfg.eps:.2f}): the proxy inherits the directional bias; at the reference the within-prompt "
                   f"drift Cov(H, r | x) is {np.median([r['cov_H_r'] for r in crowd]):+.3f} (> 0: Prop. 1 predicts "
                   "growing hard mass).")
    ev = [r for r in ev_rows if r["task"] == task and r["variant"] == "base"]
    if ev:
        fired = [r for r in ev if r["onset"] is not None]
        out.append(f"onset monitor (proxy rising while audit-set true utility falls): fired in {len(fired)}/{len(ev)} base "
                   "runs" + (f", median onset at step {np.median([r['onset'] for r in fired]):g}" if fired else "") + ".")
    return out


# --------------------------------------------------------------------------- the section
def section(preset: str, out: str | os.PathLike, seed: int | None = None, log=print, cfg: LLMLabConfig | None = None,
            heading: str = "h2"):
    """Run (or resume) the LLM experiments and return (report blocks, {csv name: rows})."""
    from murphyjax.align import data
    from murphyjax.experiments.llm_run import run_llm

    if cfg is None:
        cfg = llm_preset(preset, **({} if seed is None else {"seed": seed}))
    res = run_llm(cfg, Path(out), log)
    rows = A.points(res)
    cv = A.curves(rows)
    mt = A.method_table(rows, cv, A.queries(res))
    gao = A.gao_fits(rows)
    sw = A.sweep_table(cv)
    temps, shift = A.finals_table(res, "temperature"), A.finals_table(res, "shift")
    rmt, evt = A.rm_table(res), A.events_table(res)
    data.to_parquet({k: [r[k] for r in rows] for k in rows[0]}, Path(out) / "llm_points.parquet")
    h2, h3 = heading, "h3" if heading == "h2" else "h4"
    model = "a tiny Llama (same architecture as SmolLM2) trained from scratch" if cfg.model == "tiny" else "SmolLM2-135M-Instruct"
    B = [(h2, f"LLM policies: proxy up, truth down, and what routing and MAPS buy back ({model})"),
         ("p", f"Preset '{preset}'. Tasks {list(cfg.tasks)}: a fraction alpha={cfg.alpha} of prompts is hard; there the "
               f"annotators prefer the hacked response (agreement with the user's wrong claim / the longer answer) with "
               f"probability 1/2 + eps = {0.5 + cfg.eps}; easy-prompt annotators are right w.p. {0.5 + cfg.easy_eps}. The true "
               "utility of every generation is computed exactly from its text. The reference policy is SFT on the base "
               "policy's demonstrations; each method starts from it. Proxy = the Bradley-Terry reward model learned from the "
               "labels the method used. Quantities in reference standard deviations (Gao et al.'s normalisation); "
               f"d = sqrt(KL(pi || pi_ref)), exact KL along the samples. Medians over {cfg.seeds} seeds with 90 % intervals. "
               "Data: llm_points.parquet / llm_points.csv (every evaluation), llm_*.csv, datasets in llm/<task>/data/."),
         ]
    T = {"llm_points": rows, "llm_curves": cv, "llm_method_table": mt, "llm_gao_fits": gao, "llm_pressure_sweeps": sw,
         "llm_temperature": temps, "llm_shift": shift, "llm_feedback": rmt, "llm_onset_events": evt,
         "llm_theory": theory_rows(cfg, res, rmt, cv)}
    for task in cfg.tasks:
        methods = [m for m in cfg.methods if any(r["method"] == m and r["task"] == task for r in mt)]
        fg = {k: os.path.join(out, f"fig_llm_{k}_{task}.png") for k in ("gap", "proxy_true", "hardmass", "pressure")}
        fig_gap(cv, task, methods, fg["gap"])
        fig_gap(cv, task, methods, fg["hardmass"], y="hacked", ylabel="hard mass (fraction hacked)")
        fig_proxy_true(cv, gao, task, methods, fg["proxy_true"])
        fig_pressure(cfg, cv, sw, task, fg["pressure"])
        B += [(h3, f"Task: {task}"), ("ul", findings(cfg, mt, rmt, evt, gao, task)),
              ("img", fg["gap"], f"{task}: gap vs d per method and intervention"),
              ("img", fg["hardmass"], f"{task}: hard mass of the generations vs d"),
              ("img", fg["proxy_true"], f"{task}: proxy and true utility vs d (base), with the fitted Gao et al. form"),
              ("img", fg["pressure"], f"{task}: the pressure axes"),
              ("p", "Method table: gap = a + b d fitted per seed over each run's evaluations (slope b, intercept a: median "
                    "[q05, q95]); peak true utility of the median curve and the pressure where it occurs (steps, iterations "
                    "or n); final values at the end of the run; labels = preference labels spent (routing buys "
                    f"{cfg.votes} calibrated labels per routed pair)."),
              table([("label", "method"), ("variant", "feedback"), ("slope", "slope b"), ("slope_q05", "q05"),
                     ("slope_q95", "q95"), ("intercept", "intercept a"), ("peak_true", "peak U"), ("peak_at", "at"),
                     ("peak_d", "at d"), ("start_true", "U ref"), ("final_true", "U final"), ("final_gap", "gap final"),
                     ("start_hacked", "H ref"), ("final_hacked", "H final"), ("final_d", "d final"), ("labels", "labels")],
                    [r for r in mt if r["task"] == task]),
              ("p", "Pressure sweeps (final point of each run): smaller PPO KL coefficient and smaller DPO beta mean more "
                    "pressure."),
              table([("method", "method"), ("sweep", "setting"), ("pressure", "at"), ("proxy_n", "proxy_n"),
                     ("true", "U"), ("true_q05", "q05"), ("true_q95", "q95"), ("gap", "gap"), ("hacked", "H"),
                     ("kl_exact", "KL exact"), ("kl_k1", "KL k1"), ("kl_k3", "KL k3")],
                    [r for r in sw if r["task"] == task]),
              ("p", "Gao et al. forms fitted to the true-utility gain against d (pooled over seeds): R = d (a - b d) for "
                    "best-of-n, R = d (a - b log d) for the trained policies (murphyjax.theory.fit_gao)."),
              table([(k, k) for k in ("method", "form", "a", "b", "r2", "peak_d_fit", "peak_value_fit", "points")],
                    [r for r in gao if r["task"] == task]),
              ("p", "Temperature (MAPS D.5) and shift (D2: evaluation prompts with hard fraction (1 + rho) alpha) for the "
                    "final PPO and DPO policies."),
              table([(k, k) for k in ("method", "temperature", "proxy", "true", "true_q05", "true_q95", "hacked", "gap",
                                      "kl_exact")], [r for r in temps if r["task"] == task]),
              table([(k, k) for k in ("method", "shift", "true", "true_q05", "true_q95", "true_hard", "hacked", "gap")],
                    [r for r in shift if r["task"] == task]),
              ("p", "Feedback channels and the reward models learned from them (per seed)."),
              table([(k, k) for k in ("channel", "seed", "label_accuracy_hard", "label_accuracy_easy", "rm_true_accuracy_hard",
                                      "rm_true_accuracy_easy", "queries", "cov_H_r", "beta_star", "hard_mass_ref")],
                    [r for r in rmt if r["task"] == task])]
    B += [(h3, "Predicted next to measured"), ("p", "Closed forms of murphyjax.theory evaluated at this run's settings, next "
                                                     "to the measured quantity (medians over seeds)."),
          table([("quantity", "quantity"), ("task", "task"), ("predicted", "predicted"), ("measured", "measured"),
                 ("note", "note")], T["llm_theory"])]
    return B, T


def theory_rows(cfg, res, rmt, cv) -> list[dict]:
    from murphyjax import theory

    out = []
    fb = cfg.feedback_config()
    for task in cfg.tasks:
        def med(channel, key):
            v = [r[key] for r in rmt if r["task"] == task and r["channel"] == channel]
            return float(np.median(v)) if v else float("nan")
        out.append({"quantity": "crowd label accuracy on hard pairs", "task": task, "predicted": 0.5 - cfg.eps,
                    "measured": med("crowd", "label_accuracy_hard"), "note": "1/2 - eps (directional Massart channel)"})
        acc = fb.routed_accuracy()
        out.append({"quantity": "oracle-routed label accuracy on hard pairs", "task": task, "predicted": acc,
                    "measured": med("route_oracle", "label_accuracy_hard"),
                    "note": f"1 - majority_error({fb.votes}, 1/2 + {fb.cal_eps}) (Theorem 2's majority)"})
        out.append({"quantity": "noisy-flagger label accuracy on hard pairs", "task": task,
                    "predicted": fb.tau * acc + (1 - fb.tau) * (0.5 - cfg.eps), "measured": med("route_flagger", "label_accuracy_hard"),
                    "note": f"tau acc + (1 - tau)(1/2 - eps), tau={fb.tau} (Theorem 3's flagger)"})
        out.append({"quantity": "within-prompt drift Cov(H, r - beta* h_hat | x) at the reference", "task": task,
                    "predicted": 0.0, "measured": float(np.median([r["maps_drift_ref"] for r in res[task]["rms"].values()
                                                                   if r["channel"] == "crowd"])),
                    "note": "MAPS D.3: beta* cancels the first-order drift at lambda = 0 (in expectation)"})
        b = [r for r in cv if (r["task"], r["method"], r["variant"], r["sweep"]) == (task, "bon", "base", "")]
        if b:
            last = b[-1]
            out.append({"quantity": f"best-of-{last['pressure']} KL", "task": task,
                        "predicted": float(theory.bon_kl_bound(float(last["pressure"]))), "measured": last["kl_exact"],
                        "note": "log n - (n-1)/n is an upper bound (Beirami et al.); measured: exact on the sample law"})
    return out


def cli(args) -> int:
    """``murphyjax reproduce --preset llm``: the LLM experiments on SmolLM2-135M alone, in a run folder."""
    import json

    from murphyjax.cli import UsageError
    from murphyjax.experiments import report
    from murphyjax.experiments.llm_config import config_hash

    try:
        overrides = _overrides(args.set)
        cfg = llm_preset("llm", **overrides, **({} if args.seed is None else {"seed": args.seed}))
    except ValueError as e:
        raise UsageError(str(e)) from None
    from murphyjax.llm.fetch import cached_path

    if not cached_path("smollm2-135m").exists():
        print(f"murphyjax: error: the llm preset needs SmolLM2-135M at {cached_path('smollm2-135m')}; run "
              "`murphyjax models fetch smollm2-135m` first", file=sys.stderr)
        return 1
    out = args.out or os.path.join("runs", f"llm-{config_hash(cfg)}")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump({"preset": "llm", "hash": config_hash(cfg), "config": cfg.to_json()}, fh, indent=2)
    blocks, tables = section("llm", out, cfg=cfg, heading="h1")
    from murphyjax.experiments.reproduce import write_csv

    for name, rows in tables.items():
        write_csv(os.path.join(out, f"{name}.csv"), rows)
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write(report.render_md(blocks))
    with open(os.path.join(out, "report.html"), "w") as fh:
        fh.write(report.render_html(blocks, "murphyjax reproduce --preset llm"))
    print(f"wrote {os.path.join(out, 'report.md')} and report.html")
    return 0


def _overrides(items) -> dict:
    """``--set KEY=VALUE`` for the LLM config (typed after the ``llm`` preset; tuples as comma lists)."""
    from murphyjax.experiments.reproduce import parse_overrides

    return parse_overrides(items, LLM_PRESETS["llm"])
