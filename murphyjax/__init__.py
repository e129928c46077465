"""murphyjax: a JAX-native theory and simulation toolkit for the Alignment Gap.

Reference implementation of "Murphy's Laws of AI Alignment: Why the Gap Always Wins"
(Gaikwad, arXiv:2509.05381) and of the neighbouring results (KL tilting, best-of-n,
reward-model over-optimisation, catastrophic Goodhart).

Numerics: importing murphyjax turns on JAX's 64-bit mode (``jax_enable_x64``) because the
theory is checked to the last digit in float64. Code that wants float32 (the LLM stack, the
fast simulators) passes explicit dtypes. Set ``MURPHYJAX_X64=0`` before importing to opt out
(the theory then runs in float32 and its tolerances no longer hold).
"""

import os as _os

import jax as _jax

if _os.environ.get("MURPHYJAX_X64", "1") != "0":
    _jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

from murphyjax import theory  # noqa: E402,F401  (re-exported: murphyjax.theory)

__all__ = ["theory", "__version__"]
