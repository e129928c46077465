"""JAX's persistent compilation cache for murphyjax's command-line runs and tests.

The theory check and the experiments compile many small XLA programs; caching them on disk
makes repeated runs several times faster. The library itself never changes JAX's
configuration on import; the CLI and the test suite call :func:`enable_compilation_cache`.
"""

from __future__ import annotations

import os
import pathlib


def cache_root() -> pathlib.Path:
    """``$MURPHYJAX_CACHE`` or ``~/.cache/murphyjax``."""
    return pathlib.Path(os.environ.get("MURPHYJAX_CACHE", pathlib.Path.home() / ".cache" / "murphyjax"))


def enable_compilation_cache(path: str | os.PathLike | None = None) -> None:
    """Cache every compiled XLA program under ``path`` (default ``cache_root()/jax``)."""
    import jax

    d = pathlib.Path(path) if path is not None else cache_root() / "jax"
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # read-only home: run without the cache
    jax.config.update("jax_compilation_cache_dir", str(d))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
