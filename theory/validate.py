"""Input validation shared by the theory functions and the library (``murphyjax.theory.validate``).

Every public function of ``murphyjax.theory`` and of the simulation library converts its inputs with
these helpers. They raise ``ValueError``
naming the parameter and its valid range. Checks run on concrete values only: inside
``jax.jit``/``vmap`` the values are tracers and the checks are skipped (validate before
tracing, e.g. once on the grid you are about to map over).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

F64 = jnp.float64


def concrete(x):
    """Return ``x`` as a NumPy array, or ``None`` when it is a tracer (inside jit/vmap)."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _fmt(v) -> str:
    v = np.asarray(v)
    if v.size == 1:
        return f"{v.reshape(()).item()!r}"
    return f"array of shape {v.shape}"


def _first_bad(arr: np.ndarray, bad: np.ndarray):
    return (arr[bad].flat[0] if arr.ndim else arr).item()


def as_float(name: str, x, *, allow_nan: bool = False):
    """Convert to a float64 JAX array; reject NaN (and non-numeric input)."""
    c = concrete(x)
    if c is not None:
        if c.dtype == object or not (np.issubdtype(c.dtype, np.number) or c.dtype == bool):
            raise ValueError(f"{name} must be numeric; got {x!r}")
        c = c.astype(np.float64)
        if not allow_nan and np.isnan(c).any():
            raise ValueError(f"{name} must not contain NaN; got {_fmt(c)} with NaN entries")
    return jnp.asarray(x, dtype=F64)


def interval(name: str, x, lo=-np.inf, hi=np.inf, *, lo_closed=False, hi_closed=False):
    """Convert ``x`` and check ``lo < x < hi`` (or with closed ends)."""
    out = as_float(name, x)
    c = concrete(x)
    if c is not None:
        c = c.astype(np.float64)
        ok = np.ones(c.shape, bool)
        ok &= (c >= lo) if lo_closed else (c > lo)
        ok &= (c <= hi) if hi_closed else (c < hi)
        if not ok.all():
            lb = "[" if lo_closed else "("
            rb = "]" if hi_closed else ")"
            bad = _first_bad(c, ~ok)
            raise ValueError(f"{name} must lie in {lb}{lo}, {hi}{rb}; got {bad!r}")
    return out


def alpha(x, name: str = "alpha"):
    return interval(name, x, 0.0, 1.0)


def eps(x, name: str = "eps"):
    return interval(name, x, 0.0, 0.5)


def positive(name: str, x):
    return interval(name, x, 0.0, np.inf)


def nonnegative(name: str, x):
    return interval(name, x, 0.0, np.inf, lo_closed=True)


def finite(name: str, x):
    return interval(name, x, -np.inf, np.inf)


def probability(name: str, x):
    return interval(name, x, 0.0, 1.0, lo_closed=True, hi_closed=True)


def prob_vector(name: str, p, *, atol: float = 1e-9):
    """A probability vector along the last axis: entries in [0, 1], summing to 1."""
    out = as_float(name, p)
    c = concrete(p)
    if c is not None:
        c = c.astype(np.float64)
        if c.ndim == 0:
            raise ValueError(f"{name} must be a probability vector (at least 1-D); got a scalar")
        if (c < 0).any() or (c > 1).any():
            raise ValueError(f"{name} entries must lie in [0, 1]; got {_first_bad(c, (c < 0) | (c > 1))!r}")
        s = c.sum(-1)
        if np.abs(s - 1).max() > atol:
            raise ValueError(
                f"{name} must sum to 1 along its last axis (tolerance {atol:g}); got sums {_fmt(s)}"
                f" (max deviation {np.abs(s - 1).max():.3g})"
            )
    return out


def log_prob_vector(name: str, logp, *, atol: float = 1e-9):
    """Normalised log-probabilities along the last axis (entries may be -inf)."""
    c = concrete(logp)
    if c is not None:
        c = np.asarray(c, dtype=np.float64)
        if np.isnan(c).any():
            raise ValueError(f"{name} must not contain NaN")
        if (c == np.inf).any() or (c > 1e-12).any():
            raise ValueError(f"{name} must be log-probabilities (<= 0); got a maximum of {c.max()!r}")
        if c.ndim == 0:
            raise ValueError(f"{name} must be a vector of log-probabilities (at least 1-D); got a scalar")
        m = c.max(-1, keepdims=True)
        lse = (m + np.log(np.exp(c - m).sum(-1, keepdims=True)))[..., 0]
        if np.abs(lse).max() > atol:
            raise ValueError(
                f"{name} must be normalised: logsumexp along the last axis must be 0 "
                f"(tolerance {atol:g}); got {_fmt(lse)}"
            )
    return jnp.asarray(logp, dtype=F64)


def integer(name: str, x, lo: int = 0):
    """Integer-valued (float dtype allowed if integral) and >= lo."""
    out = as_float(name, x)
    c = concrete(x)
    if c is not None:
        c = c.astype(np.float64)
        if (c != np.round(c)).any() or (c < lo).any() or np.isinf(c).any():
            raise ValueError(f"{name} must be an integer >= {lo}; got {_fmt(c)}")
    return out


def same_shape(**arrays):
    """Check that all named arrays have the same shape."""
    shapes = {k: tuple(np.shape(v)) for k, v in arrays.items()}
    if len(set(shapes.values())) > 1:
        desc = ", ".join(f"{k} {s}" for k, s in shapes.items())
        raise ValueError(f"shapes must match: {desc}")


def broadcastable(**arrays):
    shapes = {k: tuple(np.shape(v)) for k, v in arrays.items()}
    try:
        return np.broadcast_shapes(*shapes.values())
    except ValueError:
        desc = ", ".join(f"{k} {s}" for k, s in shapes.items())
        raise ValueError(f"shapes must broadcast together: {desc}") from None
