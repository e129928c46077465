"""The "laws" section of ``murphyjax reproduce``: each law where it binds, predicted vs measured.

``section(preset, out, seed, lab=...)`` runs (or resumes) every part, draws one figure per law and
returns (report blocks, {csv name: rows}). Each part's raw results are cached in
``<out>/laws/<config hash>-<code hash>/`` (NPZ/JSON written atomically), so an interrupted run
resumes part by part and the same seed gives the same numbers.
"""

from __future__ import annotations

import os
import time

import numpy as np

from murphyjax.experiments.laws import directional as laws
from murphyjax.experiments.laws import other_laws as laws_extra
from murphyjax.experiments.laws import figures as laws_figures
from murphyjax.experiments.laws import tables as laws_tables
from murphyjax.experiments.common.store import cached, source_hash
from murphyjax.experiments.laws import config as laws_config
from murphyjax.experiments.laws.config import LawsConfig, config_hash, preset as laws_preset


def code_hash() -> str:
    """8 hex digits over the source of every module a cached stage depends on (the bandit simulators,
    the laws' simulations and config, ``murphyjax.theory``): new code, new cache."""
    import murphyjax.bandits as mb
    from murphyjax import theory

    return source_hash(mb, laws, laws_extra, laws_config, theory)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = np.asarray(v)
    return out


def _unflat(d):
    out = {}
    for k, v in d.items():
        cur = out
        *head, last = k.split(".")
        for h in head:
            cur = cur.setdefault(h, {})
        cur[last] = v
    return out


def compute(cfg: LawsConfig, out: str, progress: bool = True) -> dict:
    """Every part of the section (cached): directional laws per variant, MAPS, tails, trilemma, sharp."""
    store = os.path.join(out, "laws", f"{config_hash(cfg)}-{code_hash()}")
    os.makedirs(store, exist_ok=True)
    t0 = time.perf_counter()
    say = (lambda m: print(f"  laws: {m} ({time.perf_counter() - t0:.0f} s)", flush=True)) if progress else (lambda m: None)
    R = {"directional": {}}
    for v in cfg.variants:
        R["directional"][v] = cached(store, f"directional_{v}", lambda v=v: laws.run_directional(cfg, (v,))[v])
        say(f"directional {v}")
    R["maps"] = cached(store, "maps", lambda: laws.run_maps(cfg))
    say("MAPS")
    R["tails"] = _unflat(cached(store, "tails", lambda: _flat(laws_extra.tail_curves(cfg))))
    say("tails")
    tri = {}
    rows = cached(store, "trilemma_rows", lambda: tri.setdefault("t", laws_extra.trilemma_region(cfg))["rows"])
    clouds = cached(store, "trilemma_clouds", lambda: _flat(tri.setdefault("t", laws_extra.trilemma_region(cfg))["clouds"]))
    R["trilemma"] = {"rows": rows, "clouds": {k: {f: (float(a) if a.ndim == 0 else a) for f, a in v.items()} for k, v in _unflat(clouds).items()}}
    say("trilemma")
    R["sharp"] = cached(store, "sharp", lambda: laws_extra.sharp_curves(cfg))
    R["dilution"] = cached(store, "dilution", lambda: laws_extra.dilution_rows(cfg))
    say("exact errors, dilution")
    return R


def gao_curves(R) -> dict:
    """The measured true-utility gain vs d = sqrt(KL) curves the Gao et al. forms are fitted to: {name: (d (S, L), gain (S, L))}."""
    d = R["directional"]["hacked"]
    t = R["tails"]
    curves = {
        "directional: policy tilt π_β": (np.sqrt(d["policy.learned.kl"]), d["policy.measured.value"] - d["policy.measured.value"][:, :1]),
        "directional: (q_λ, π_λ) system": (np.sqrt(d["context.learned.kl"]), d["context.measured.value"] - d["context.measured.value"][:, :1]),
    }
    for err, lab in (("normal", "light"), ("student_t", "heavy")):
        for m, ml in (("tilt", "tilting"), ("bon", "best-of-n")):
            curves[f"{lab} tail: {ml}"] = (np.sqrt(np.maximum(t[err][m]["kl"], 0)), t[err][m]["true"] - t[err][m]["true"][:, :1])
    return curves


def section(preset: str, out: str, seed: int | None = None, *, lab=None, progress: bool = True, overrides=None):
    """Blocks and tables of the laws section. ``lab`` = (LabConfig, rows, arrays) of the bandit run, for
    comparing the exact testing errors with the lab's simulated protocols."""
    kw = dict(overrides or {})
    if seed is not None:
        kw["seed"] = seed
    cfg = laws_preset(preset if preset in ("quick", "paper") else "quick", **kw)
    t0 = time.perf_counter()
    R = compute(cfg, out, progress)
    fig = lambda n: os.path.join(out, n)
    D = R["directional"]
    T = {"laws_cov0": laws_tables.cov0_table(D), "laws_drift": laws_tables.drift_table(cfg, D), "laws_b4": laws_tables.b4_table(cfg, D),
         "laws_b10": laws_tables.b10_table(cfg, D), "laws_gap": laws_tables.gap_table(cfg, D), "laws_peak": laws_tables.peak_table(cfg, D),
         "laws_maps": laws_tables.maps_table(cfg, R["maps"]), "laws_flagger_sweep": laws_tables.sweep_table(cfg, R["maps"]),
         "laws_trilemma": R["trilemma"]["rows"], "laws_tails": laws_extra.tail_rows(R["tails"]),
         "laws_sharp": R["sharp"], "laws_looseness": laws_extra.looseness_rows(R["sharp"]), "laws_dilution": R["dilution"]}
    curves = gao_curves(R)
    T["laws_gao"] = laws_extra.gao_rows(curves)
    T["laws_lab_vs_exact"] = laws_extra.lab_comparison(*lab) if lab is not None else []
    if progress:
        print(f"  laws: tables and fits ({time.perf_counter() - t0:.0f} s)", flush=True)
    F = laws_figures
    F.law_curves(cfg, D, fig("fig_laws_drift.png"), "context.learned.rho", "context.measured.rho", "context.learned.drift", "context.measured.rho",
                 "hard mass ρ(λ) = q_λ(X_hard)", "ρ'(λ) vs Cov_q(H, ŝ)", "Props 1-2 on the context tilt: hard mass and its derivative")
    F.law_curves(cfg, D, fig("fig_laws_hacked.png"), "policy.learned.hacked", "policy.measured.hacked", "policy.learned.dhacked",
                 "policy.measured.hacked", "hacked mass E_μ[H π_λ(a₁|X)]", "derivative vs E_μ[H Cov_π(1{a₁}, r̂)]",
                 "Props 1-2 on the policy tilt: mass of the hacked action on hard contexts")
    thr = {r["variant"]: r for r in T["laws_b4"]}
    F.b4(cfg, D, thr, fig("fig_laws_b4.png"))
    F.law_curves(cfg, D, fig("fig_laws_b10.png"), "context.learned.dpv", "context.measured.dpv", "context.learned.dpv_slope", "context.measured.dpv",
                 "Δ_PV(λ) (greedy proxy policy)", "slope vs B.10 Cov_q(r̂ − r, ŝ)", "Prop. 6 / B.10: proxy-true divergence under q_λ")
    F.law_curves(cfg, D, fig("fig_laws_gap.png"), "policy.learned.gap_v1", "policy.measured.gap", "policy.learned.slope_v1", "policy.measured.gap",
                 "gap(β) = E[r̂ − U] under π_β", "slope vs E_c Cov(r̂ − U, r̂)", "The v1 Alignment Gap of π_β ∝ π₀ exp(β r̂), r̂ learned from biased labels")
    F.maps(cfg, R["maps"], fig("fig_laws_maps.png"))
    F.sweep(cfg, T["laws_flagger_sweep"], fig("fig_laws_flagger.png"))
    F.trilemma(R["trilemma"], fig("fig_laws_trilemma.png"))
    F.tails(R["tails"], fig("fig_laws_tails.png"))
    F.gao(curves, T["laws_gao"], fig("fig_laws_gao.png"))
    F.sharp(R["sharp"], fig("fig_laws_sharp.png"))
    if progress:
        print(f"  laws: figures ({time.perf_counter() - t0:.0f} s)", flush=True)
    from murphyjax.experiments.laws import text as laws_text

    blocks = laws_text.blocks(cfg, T, fig, time.perf_counter() - t0)
    return blocks, T
