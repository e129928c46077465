"""The theory check: every closed form against an independent computation.

Each check returns one or more :class:`Row`: the closed form, the independent value
(autodiff, exact enumeration or Monte Carlo with its standard error), the error and the
tolerance. Rows marked ``erratum`` show a statement of the paper as written; they are
expected to fail and do not count against the exit code of ``murphyjax theory check``.
"""

from murphyjax.theory.checks._core import Row, run_all, CHECKS

__all__ = ["Row", "run_all", "CHECKS"]
