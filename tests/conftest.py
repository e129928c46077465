"""Test configuration: 8 fake CPU devices for the sharding tests, x64 on (murphyjax does it)."""

import os

# Must be set before jax initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# test_cli calls ``cli.main`` in this process, long after JAX's threads started: leave its malloc alone
# (``murphyjax.malloc`` is tested in subprocesses)
os.environ.setdefault("MURPHYJAX_TUNE_MALLOC", "0")
# every LLM test trains its own reference and reward models (the weights cache has its own test)
os.environ.setdefault("MURPHYJAX_WEIGHTS_CACHE", "off")

import murphyjax  # noqa: E402,F401  (turns on x64)

from murphyjax.cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()
