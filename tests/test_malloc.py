"""murphyjax.malloc: once tuned, XLA:CPU's large temp buffers stay mapped from one call to the next."""

import argparse
import json
import os
import platform
import subprocess
import sys

import pytest

from murphyjax.malloc import GLIBC_TUNABLES

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="glibc malloc only")

# A jitted function whose temp buffer (two 128 MB arrays) XLA:CPU allocates on its worker threads at
# every call; prints the temp size and the bytes of minor page faults of each of 14 warm calls.
_PROBE = """
import json, resource, sys
if sys.argv[1] == "mallopt":
    from murphyjax.malloc import tune_malloc
    assert tune_malloc()
import jax, jax.numpy as jnp

@jax.jit
def f(x):
    y = jnp.sin(x)
    return jnp.sum(jnp.cumsum(y) * y)

x = jnp.ones(32_000_000, jnp.float32)
temp = f.lower(x).compile().memory_analysis().temp_size_in_bytes
f(x).block_until_ready()
faults = []
for _ in range(14):
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) * resource.getpagesize())
print(json.dumps({"temp": temp, "faults": faults}))
"""


def _probe(mode):
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "XLA_FLAGS")}
    env["JAX_PLATFORMS"] = "cpu"
    if mode == "env":
        env["GLIBC_TUNABLES"] = GLIBC_TUNABLES
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc
def test_tuned_malloc_stops_page_faults_of_the_temp_buffer_every_call():
    default, tuned, env = _probe("default"), _probe("mallopt"), _probe("env")
    temp = default["temp"]
    assert temp >= 200e6
    # glibc's default: the worker threads' arenas mmap the temp buffer afresh at every call
    assert min(default["faults"]) > 0.5 * temp, default
    # tune_malloc() (or the same GLIBC_TUNABLES): the buffer is reused and calls stop faulting; the first
    # few warm calls may still fault (measured on this VM: 0-7 of 14, then none; the cause is not settled,
    # the kernel's page reclaim is a candidate), so the test asks for at least 4 fault-free calls
    for r in (tuned, env):
        assert sum(f < 0.05 * temp for f in r["faults"]) >= 4, r

def test_benchmarks_use_the_same_setting():
    import bench_common

    assert bench_common.ALLOCATORS["tuned-arena"] == GLIBC_TUNABLES
    assert bench_common._allocators("all") == ["default", "tuned", "tuned-arena"]
    assert bench_common._allocators("both") == ["default", "tuned"]
    with pytest.raises(argparse.ArgumentTypeError, match="--allocator: unknown"):
        bench_common._allocators("tuned,fast")


def test_benchmark_scripts_import_from_their_folder():
    """The benchmarks run by path, as the torch-side worker Python runs them."""
    import bench_dpo
    import bench_llm

    for mod in (bench_llm, bench_dpo):
        r = subprocess.run([sys.executable, mod.__file__, "--help"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "--allocator" in r.stdout
