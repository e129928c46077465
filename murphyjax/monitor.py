"""A reward-hacking onset monitor usable in any training loop.

It watches two signals over optimisation steps: the proxy reward (what is optimised) and a
calibration signal that the proxy cannot see:
  * the true utility measured on an audit set (the gap's other side), or
  * the hard-mass drift, Cov_q(H, s) estimated from the current policy's samples: by
    Proposition 1 (paper Section 3.4) it is the rate at which optimisation moves mass into the
    hard set where feedback is biased.
Onset is flagged at the first step where, for ``patience`` consecutive updates, the proxy keeps
rising (least-squares slope over the last ``window`` points > ``min_proxy_slope``) while the
calibration turns (true-utility slope < ``max_true_slope``, or drift > ``z`` standard errors).
The event is logged once, with the slopes that triggered it; ``state_dict``/``load_state_dict``
make the monitor resumable with a training checkpoint.

    mon = OnsetMonitor(window=8, patience=3)
    for step in ...:
        event = mon.update(step, proxy=proxy_mean, true_utility=audit_mean)
        if event: log(event)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np


def slope(xs, ys) -> float:
    """Least-squares slope of ys on xs (nan with fewer than 2 distinct xs)."""
    x = np.asarray(xs, float)
    y = np.asarray(ys, float)
    if x.size < 2 or np.ptp(x) == 0:
        return float("nan")
    xc = x - x.mean()
    return float(xc @ (y - y.mean()) / (xc @ xc))


def hard_mass_drift_estimate(hard, score, weights=None) -> tuple[float, float]:
    """Estimate Cov_q(H, s) and its standard error from samples of the current policy.

    Args:
      hard: 0/1 (or probabilities) per sample; score: the proxy score per sample;
      weights: optional importance weights.
    Returns (drift, standard error); by Prop. 1, drift > 0 means the hard mass is growing.
    """
    h = np.asarray(hard, float)
    s = np.asarray(score, float)
    if h.shape != s.shape or h.ndim != 1 or h.size < 3:
        raise ValueError(f"hard and score must be 1-D of equal length >= 3; got {h.shape} and {s.shape}")
    w = np.ones_like(h) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    hc = h - w @ h
    sc = s - w @ s
    prod = hc * sc
    cov = float(w @ prod)
    n_eff = 1.0 / float(w @ w)
    se = float(np.sqrt(max(w @ (prod - cov) ** 2, 0.0) / max(n_eff - 1.0, 1.0)))
    return cov, se


@dataclasses.dataclass
class OnsetMonitor:
    """Flags the onset of reward hacking: proxy up while the calibration signal turns.

    Args:
      window: number of recent points in each slope fit (>= 3).
      patience: consecutive updates the condition must hold before the event fires (>= 1).
      min_proxy_slope: the proxy counts as rising above this slope.
      max_true_slope: the true utility counts as turning below this slope.
      z: the drift counts as turning when drift > z * its standard error.
      on_event: optional callback receiving the event dict (e.g. a logger).
    """

    window: int = 8
    patience: int = 3
    min_proxy_slope: float = 0.0
    max_true_slope: float = 0.0
    z: float = 2.0
    on_event: Callable[[dict], None] | None = None
    steps: list = dataclasses.field(default_factory=list)
    proxy: list = dataclasses.field(default_factory=list)
    true_utility: list = dataclasses.field(default_factory=list)
    streak: int = 0
    streak_start: int | None = None
    event: dict | None = None

    def __post_init__(self):
        if not (isinstance(self.window, int) and self.window >= 3):
            raise ValueError(f"window must be an integer >= 3; got {self.window!r}")
        if not (isinstance(self.patience, int) and self.patience >= 1):
            raise ValueError(f"patience must be an integer >= 1; got {self.patience!r}")
        if not self.z >= 0:
            raise ValueError(f"z must be >= 0; got {self.z!r}")

    def update(self, step: int, proxy: float, true_utility: float | None = None,
               drift: float | None = None, drift_se: float | None = None) -> dict | None:
        """Record one step; returns the onset event the first time it fires, else None.

        Give either ``true_utility`` (audit-set mean) or ``drift`` (with ``drift_se``), e.g.
        from :func:`hard_mass_drift_estimate`.
        """
        if (true_utility is None) == (drift is None):
            raise ValueError("give exactly one calibration signal: true_utility or drift")
        if not math.isfinite(float(proxy)):
            raise ValueError(f"proxy must be finite; got {proxy!r}")
        self.steps.append(int(step))
        self.proxy.append(float(proxy))
        self.true_utility.append(float("nan") if true_utility is None else float(true_utility))
        if self.event is not None or len(self.steps) < self.window:
            return None
        xs = self.steps[-self.window:]
        ps = slope(xs, self.proxy[-self.window:])
        if true_utility is not None:
            cs = slope(xs, self.true_utility[-self.window:])
            turning = cs < self.max_true_slope
            signal = {"calibration": "true_utility", "true_slope": cs}
        else:
            se = 0.0 if drift_se is None else float(drift_se)
            turning = float(drift) > self.z * se
            signal = {"calibration": "hard_mass_drift", "drift": float(drift), "drift_se": se}
        if ps > self.min_proxy_slope and turning:
            if self.streak == 0:
                self.streak_start = int(step)
            self.streak += 1
        else:
            self.streak, self.streak_start = 0, None
        if self.streak >= self.patience:
            self.event = {"event": "reward_hacking_onset", "step": self.streak_start, "confirmed_at": int(step),
                          "proxy_slope": ps, **signal}
            if self.on_event is not None:
                self.on_event(self.event)
            return self.event
        return None

    def state_dict(self) -> dict:
        """Everything needed to resume (JSON-serialisable)."""
        d = dataclasses.asdict(self)
        d.pop("on_event")
        return d

    def load_state_dict(self, d: dict) -> None:
        for k, v in d.items():
            setattr(self, k, v)
