"""The theory check: every closed form against an independent computation.

Each check returns one or more :class:`Row`: the closed form, the independent value
(autodiff, exact enumeration or Monte Carlo with its standard error), the error and the
tolerance. Rows marked ``erratum`` show a statement of the paper as written; they are
expected to fail and do not count against the exit code of ``murphyjax theory check``.
"""

from __future__ import annotations

from typing import Callable

import jax

from murphyjax.theory.checks import (bon_checks, gap_checks, laws_checks, maps_checks, murphy_checks, sharp_checks,
                                     tilting_checks)
from murphyjax.theory.checks._core import Row

# the check modules, in the order their rows appear (a check's randomness is fold_in(key, its position))
MODULES = (murphy_checks, tilting_checks, gap_checks, laws_checks, maps_checks, bon_checks, sharp_checks)


def checks() -> list[tuple[tuple[str, ...], Callable[[jax.Array], list[Row]]]]:
    """(row-id prefixes, check function) of every check, module by module in definition order."""
    return [(fn.check_prefixes, fn) for m in MODULES for fn in vars(m).values()
            if callable(fn) and hasattr(fn, "check_prefixes") and fn.__module__ == m.__name__]


CHECKS = checks()


def run_all(seed: int = 0, select: str | None = None) -> list[Row]:
    """Run every check, or only the rows whose id starts with ``select`` (e.g. "C7", "thm1.").

    Each check draws its randomness from ``fold_in(key(seed), position)``, so a selected row has
    the same value as in the full run.
    """
    rows: list[Row] = []
    key = jax.random.key(seed)
    for i, (prefixes, fn) in enumerate(CHECKS):
        if select is not None and not any(p.startswith(select) or select.startswith(p) for p in prefixes):
            continue
        out = fn(jax.random.fold_in(key, i))
        stray = [r.id for r in out if not r.id.startswith(prefixes)]
        if stray:
            raise AssertionError(f"{fn.__name__} registered prefixes {prefixes} but produced rows {stray}")
        rows.extend(r for r in out if select is None or r.id.startswith(select))
    return rows


__all__ = ["Row", "run_all", "CHECKS", "MODULES", "checks"]
