"""What the benchmarks share: the glibc malloc settings compared, the matmul peak probe, and the runner
that starts each measurement in a fresh worker process.

Benchmarks are scripts run by path (``python benchmarks/bench_llm.py ...``); the torch side runs in a
second Python that may not have murphyjax installed, so nothing here imports murphyjax.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

TUNED = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647"
# glibc malloc settings (GLIBC_TUNABLES), each applied identically to both sides' workers. "tuned-arena"
# (= murphyjax.malloc.GLIBC_TUNABLES) adds arena_max=1 and lifts the trim threshold above 2 GiB: XLA:CPU
# allocates a step's temp buffer (1.16 GB SFT, ~2.4 GB DPO) from its worker threads, whose arenas always
# mmap chunks that large, and a freed top chunk above the trim threshold goes back to the OS; either way
# every step page-faults the whole buffer again
ALLOCATORS = {"default": None, "tuned": TUNED,
              "tuned-arena": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776:glibc.malloc.arena_max=1"}


def _allocators(spec: str) -> list[str]:
    """``--allocator``: a comma list of ALLOCATORS names; "both" = default,tuned; "all" = every one."""
    names = {"both": ["default", "tuned"], "all": list(ALLOCATORS)}.get(spec, spec.split(","))
    bad = [n for n in names if n not in ALLOCATORS]
    if bad:
        raise argparse.ArgumentTypeError(f"--allocator: unknown {bad}; use a comma list of "
                                         f"{sorted(ALLOCATORS)}, 'both' or 'all'")
    return names


def best_time(fn, repeats):
    """(fastest, all times) of ``repeats`` calls of ``fn`` after one warm-up call (which compiles)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), times


def peak_jax(repeats: int = 5) -> dict:
    """The best float32 matmul rate of JAX on square sizes 512-2048 (GFLOP/s)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    best = 0.0
    for n in (512, 1024, 2048):
        x = jnp.asarray(np.random.rand(n, n), jnp.float32)
        f = jax.jit(lambda x: x @ x)
        t, _ = best_time(lambda: f(x).block_until_ready(), max(repeats, 5))
        best = max(best, 2 * n ** 3 / t)
    return {"gflops": best / 1e9}


def peak_torch(threads: int, repeats: int = 5) -> dict:
    """The same probe in PyTorch with ``threads`` intra-op threads."""
    import torch

    torch.set_num_threads(threads)
    best = 0.0
    for n in (512, 1024, 2048):
        x = torch.rand(n, n)
        t, _ = best_time(lambda: x @ x, max(repeats, 5))
        best = max(best, 2 * n ** 3 / t)
    return {"gflops": best / 1e9}


def run_worker(script: str, name: str, python: str, args: list[str], *, threads: int, allocator: str,
               xla_flags: str = "") -> dict:
    """Run ``python script --worker name *args`` in a fresh process with the given malloc setting and
    thread count; return the JSON object it prints on its last line."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), JAX_PLATFORMS="cpu",
               TOKENIZERS_PARALLELISM="false",
               XLA_FLAGS=" ".join(["--xla_force_host_platform_device_count=1", xla_flags]).strip())
    if ALLOCATORS[allocator]:
        env["GLIBC_TUNABLES"] = ALLOCATORS[allocator]
    r = subprocess.run([python or sys.executable, os.path.abspath(script), "--worker", name, *args],
                       env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{name} ({allocator}) failed:\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])
