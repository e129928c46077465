"""Benchmark: the JAX laboratory vs the plain NumPy baseline on the same grid, in one process.

    python benchmarks/bench_bandits.py [--preset paper] [--numpy-seeds 1] [--no-cold]

JAX: ``runner.run`` over the whole grid twice: cold (a fresh, empty persistent compilation cache,
so XLA compile time is included) and warm (executables already compiled in this process).
NumPy: ``numpy_baseline.run`` on ``--numpy-seeds`` seeds of every cell, extrapolated linearly to
all seeds (the rows are independent and equally sized, so time is linear in the number of rows).
Prints both times, the ratio and a statistical agreement check (median greedy gap per cell).
A benchmark, not a test: run it under ``flock /tmp/murphyjax-heavy.lock`` on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper", choices=["quick", "paper"])
    ap.add_argument("--numpy-seeds", type=int, default=1, help="seeds per cell timed in NumPy (then extrapolated)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-cache JAX run")
    args = ap.parse_args(argv)

    import jax

    import murphyjax  # noqa: F401
    from murphyjax.experiments import numpy_baseline, presets, reproduce, runner

    reproduce.use_all_cpu_cores()  # as `murphyjax reproduce` does: one CPU device per core

    cfg = presets.preset(args.preset)
    table = runner.rows(cfg)
    print(f"grid: {len(cfg.cells)} cells x {cfg.seeds} seeds = {len(table)} rows; n_max={cfg.n_grid[-1]}, "
          f"replicates={cfg.replicates}; devices={jax.devices()}; cpu_count={os.cpu_count()}")
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_cold:
            jax.config.update("jax_compilation_cache_dir", os.path.join(tmp, "xla-cache"))
            t0 = time.perf_counter()
            _, A, _ = runner.run(cfg, os.path.join(tmp, "cold"), progress=False)
            times["jax_cold"] = time.perf_counter() - t0
            print(f"JAX cold (compile included): {times['jax_cold']:.1f} s")
        t0 = time.perf_counter()
        _, A, _ = runner.run(cfg, os.path.join(tmp, "warm"), progress=False)
        times["jax_warm"] = time.perf_counter() - t0
        print(f"JAX warm (compiled):         {times['jax_warm']:.1f} s")
    sub = [r for r in table if r["seed"] < args.numpy_seeds]
    outs, t_np = numpy_baseline.run(cfg, sub)
    t_full = t_np * len(table) / len(sub)
    print(f"NumPy: {len(sub)} rows in {t_np:.1f} s -> {t_full:.1f} s for {len(table)} rows (linear extrapolation)")
    for k, v in times.items():
        print(f"ratio NumPy / {k}: {t_full / v:.1f}x")
    print("agreement (median greedy gap G(inf) at n_max, JAX all seeds vs NumPy timed seeds):")
    for cell in cfg.cells:
        ij = [i for i, r in enumerate(table) if (r["d"], r["alpha"], r["eps"]) == cell]
        inp = [o for o, r in zip(outs, sub) if (r["d"], r["alpha"], r["eps"]) == cell]
        gj = float(np.median(A["d1.G"][ij, -1, -1]))
        gn = float(np.median([o["d1.G"][-1, -1] for o in inp]))
        oj = float(np.mean(A["test.oracle.err"][ij, :, -1]))
        on = float(np.mean([o["test.oracle.err"][:, -1] for o in inp]))
        print(f"  d={cell[0]:3d} alpha={cell[1]:<5} eps={cell[2]:<5}  G: jax {gj:.4f} numpy {gn:.4f}   "
              f"oracle P(err) at n_max: jax {oj:.4f} numpy {on:.4f}")
    return times, t_full


if __name__ == "__main__":
    main()
