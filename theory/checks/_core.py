"""Row type and the check marker of the theory check (the runner is ``murphyjax.theory.checks``)."""

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


def check(prefixes: tuple[str, ...]):
    """Mark a check: a function of a PRNG key returning rows whose ids start with ``prefixes``. The
    runner (``murphyjax.theory.checks.run_all``) collects the marked functions of the check modules it
    lists, in their order of definition; nothing is registered as a side effect of an import."""

    def mark(fn: Callable[[jax.Array], list[Row]]):
        fn.check_prefixes = tuple(prefixes)
        return fn

    return mark


def f(x) -> float:
    """Python float of a 0-d array."""
    return float(np.asarray(x))
