"""Row type, registry and runner for the theory check."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Row:
    """One verified statement.

    kind == "identity": ``error = |closed_form - independent|`` (relative when ``relative``).
    kind == "bound": the claim is ``independent <= closed_form`` (or ``>=`` when
    ``direction == ">="``); ``error`` is the size of the violation, 0 when it holds.
    """

    id: str
    ref: str
    what: str
    closed_form: float
    independent: float
    method: str
    tol: float
    kind: str = "identity"
    direction: str = "<="
    relative: bool = False
    erratum: bool = False
    note: str = ""

    def __post_init__(self):
        for name in ("closed_form", "independent", "tol"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def error(self) -> float:
        a, b = float(self.closed_form), float(self.independent)
        if not (math.isfinite(a) and math.isfinite(b)):
            return math.inf
        if self.kind == "identity":
            err = abs(a - b)
            return err / max(abs(a), 1e-300) if self.relative else err
        viol = b - a if self.direction == "<=" else a - b
        return max(0.0, viol)

    @property
    def passed(self) -> bool:
        return bool(self.error <= self.tol)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(error=self.error, passed=self.passed)
        return d


CHECKS: list[tuple[tuple[str, ...], Callable[[jax.Array], list[Row]]]] = []


def check(prefixes: tuple[str, ...]):
    """Register a check: a function of a PRNG key returning rows whose ids start with ``prefixes``."""

    def register(fn: Callable[[jax.Array], list[Row]]):
        CHECKS.append((tuple(prefixes), fn))
        return fn

    return register


def run_all(seed: int = 0, select: str | None = None) -> list[Row]:
    """Run every registered check, or only the rows whose id starts with ``select`` (e.g. "C7", "thm1.").

    Each check draws its randomness from ``fold_in(key(seed), position)``, so a selected row has
    the same value as in the full run.
    """
    from murphyjax.theory.checks import (  # noqa: F401  (registration side effect)
        murphy_checks,
        tilting_checks,
        gap_checks,
        laws_checks,
        maps_checks,
        bon_checks,
        sharp_checks,
    )

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


def f(x) -> float:
    """Python float of a 0-d array."""
    return float(np.asarray(x))
