"""``murphyjax reproduce``: run the paper's Section 3.5 protocol and write a run folder.

    murphyjax reproduce [--preset quick|paper] [--out DIR] [--seed N] [--set KEY=VALUE ...] [--no-progress]

The run folder (DIR, or runs/<preset>-<config hash> so that re-running the same command resumes)
holds report.md and report.html, the PNG figures, one CSV per table (the data behind every figure),
config.json (the resolved configuration), environment.json (package versions, devices, timings)
and chunks/<hash>/ (the resumable raw results).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
import time

from murphyjax.experiments.common.overrides import parse_overrides
from murphyjax.experiments.lab import config as presets


class ConfigError(ValueError):
    """A bad option value (the CLI reports it in one line with exit code 2)."""


def resolve(preset: str, seed: int | None, overrides: dict) -> presets.LabConfig:
    if seed is not None:
        overrides = dict(overrides, seed=seed)
    return presets.preset(preset, **overrides)


def write_csv(path: str, rows: list[dict]):
    if not rows:
        return
    cols = list(rows[0])
    for r in rows[1:]:
        cols += [c for c in r if c not in cols]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            # repr(float(v)): shortest round-trip digits, also for NumPy floats (whose repr is 'np.float64(...)')
            w.writerow({k: (repr(float(v)) if isinstance(v, float) else v) for k, v in r.items()})


def environment(info: dict) -> dict:
    import importlib.metadata as md

    import jax

    pk = {}
    for name in ("murphyjax", "jax", "jaxlib", "numpy", "scipy", "matplotlib", "tqdm", "flax", "optax", "transformers"):
        try:
            pk[name] = md.version(name)
        except md.PackageNotFoundError:
            pk[name] = None
    return {"python": sys.version, "platform": platform.platform(), "packages": pk,
            "devices": [str(d) for d in jax.devices()], "cpu_count": os.cpu_count(), "cpu_model": cpu_model(), **info}


def cpu_model() -> str:
    """The CPU's model name (``lscpu``'s), or the platform's processor string where /proc/cpuinfo is absent."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(preset: str = "quick", out: str | None = None, seed: int | None = None, overrides: dict | None = None,
         progress: bool = True, devices=None, llm: bool = False, laws: bool | dict = False,
         prefetch_checks: bool = False) -> str:
    """Run (or resume) the reproduction and write the report; returns the run folder.

    ``llm``: append the LLM section (``llm_report.section``: a tiny policy trained from scratch;
    the CLI turns it on for the quick preset). ``laws``: append the laws section
    (``laws_report.section`` at the matching laws preset; a dict = its config overrides; the CLI turns it on).
    ``prefetch_checks``: run the theory check in a second process while the simulation runs (the CLI does)."""
    cfg = resolve(preset, seed, overrides or {})
    h = presets.config_hash(cfg)
    out = out or os.path.join("runs", f"{preset}-{h}")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump({"preset": preset, "hash": h, "config": cfg.to_json()}, fh, indent=2)
    t0 = time.perf_counter()
    from murphyjax.experiments.lab import runner
    from murphyjax.experiments.lab import section as sections

    if prefetch_checks:
        sections.prefetch_theory_checks(cfg.seed, out)
    table, arrays, info = runner.run(cfg, out, progress=progress, devices=devices)
    t_sim = time.perf_counter() - t0
    blocks, tables = sections.build(cfg, table, arrays, out, preset=preset, config_hash=h)
    info = dict(info, lab_report_seconds=time.perf_counter() - t0 - t_sim)
    if laws:  # the laws where they bind, resumable in <out>/laws
        from murphyjax.experiments.laws import section as laws_report

        t_laws = time.perf_counter()
        laws_blocks, laws_tables = laws_report.section(preset, out, seed, lab=(cfg, table, arrays), progress=progress,
                                                       overrides=laws if isinstance(laws, dict) else None)
        blocks, tables = blocks + laws_blocks, {**tables, **laws_tables}
        info = dict(info, laws_seconds=time.perf_counter() - t_laws)
    if llm:  # the LLM experiments, resumable in <out>/llm
        from murphyjax.experiments.llm import section as llm_report

        llm_blocks, llm_tables = llm_report.section("quick", out, seed)
        blocks, tables = blocks + llm_blocks, {**tables, **llm_tables}
    for name, rows in tables.items():
        write_csv(os.path.join(out, f"{name}.csv"), rows)
    info = dict(info, simulate_seconds=t_sim, total_seconds=time.perf_counter() - t0)
    env = environment(info)
    blocks = sections.finish(blocks, env)
    from murphyjax.experiments.common import report

    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write(report.render_md(blocks))
    with open(os.path.join(out, "report.html"), "w") as fh:
        fh.write(report.render_html(blocks, "murphyjax reproduce"))
    with open(os.path.join(out, "environment.json"), "w") as fh:
        json.dump(env, fh, indent=2)
    return out


def use_all_cpu_cores():
    """On a CPU-only machine expose one XLA CPU device per core, so the row-sharded computation
    runs on every core (unless the user already chose a device count via XLA_FLAGS). Must run
    before JAX initialises its backends; a no-op afterwards."""
    import jax

    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    try:
        jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)
    except RuntimeError:  # backends already initialised
        pass


def cli(args) -> int:
    """Handler of the ``reproduce`` subcommand (see murphyjax/cli.py)."""
    if getattr(args, "max_minutes", None) is not None and not args.preset.startswith("llm"):
        raise ConfigError("--max-minutes applies to the llm presets (llm, llm-pilot) only")
    if args.preset.startswith("llm"):  # the LLM experiments on SmolLM2-135M alone
        from murphyjax.experiments.llm.section import cli as llm_cli

        return llm_cli(args)
    try:
        overrides = parse_overrides(args.set, presets.PRESETS.get(args.preset, presets.PRESETS["paper"]))
        resolve(args.preset, args.seed, overrides)  # validate before any work
    except ValueError as e:
        raise ConfigError(str(e)) from None
    use_all_cpu_cores()
    out = main(args.preset, args.out, args.seed, overrides, progress=not args.no_progress,
               llm=args.preset == "quick" and not getattr(args, "no_llm", False), laws=True, prefetch_checks=True)
    print(f"wrote {os.path.join(out, 'report.md')} and report.html")
    return 0
