"""Configuration of the "laws" section of ``murphyjax reproduce`` and its two presets.

A plain frozen dataclass validated in ``__post_init__`` (one-line messages naming the field and
its range). The quick preset is sized for ~1 minute on 2 CPU cores; the paper preset doubles the
seeds and sizes. Defaults of the directional bandit are explained in
``murphyjax.bandits.directional``; the choices here:

* eps = 0.3 and sharpness = 1.2: hard-context annotators prefer the hacked action 80 % of the
  time, easy annotators are right 65-77 % of the time, so the biased proxy advantage on hard
  contexts (2 atanh(0.6) / 1.2 = 1.16 utility units) exceeds every true easy advantage (< 1):
  the tilt keeps moving mass into X_hard (Propositions 1-2 bind on the whole path);
* n_labels = 80 per context on average: the learned proxy is close to, but not at, its limit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

VARIANTS = ("hacked", "symmetric", "varying", "correlated")


@dataclasses.dataclass(frozen=True)
class LawsConfig:
    seeds: int = 5
    variants: tuple = VARIANTS  # which directional channels to run ("hacked" is required: MAPS and the Gao fits use it)
    # the directional bandit (murphyjax.bandits.directional.make_env)
    n_contexts: int = 256
    d: int = 5
    alpha: float = 0.1
    eps: float = 0.3
    spread: float = 0.6  # the "varying" variant: eps(x) = eps (1 + spread tanh(upsilon^T x))
    hard_corr: float = 1.0  # the "correlated" variant: hard subset drawn with weights exp(hard_corr theta^T x)
    sharpness: float = 1.2
    easy_margin: float = 0.5
    u_hack: float = 0.1
    hard_shift: float = 2.0
    # the learner
    n_labels: int = 20480
    context_sd: float = 1.5
    ridge: float = 1.0
    # the pressure grid and the Monte Carlo
    lam_max: float = 12.0
    n_lams: int = 49
    mc_samples: int = 2**15
    # MAPS (App. D)
    audit_size: int = 1000
    keep_factor: float = 2.0  # the learned flagger keeps keep_factor * alpha of the contexts (B.7)
    temperature: float = 2.0  # D.5: t = s / temperature
    taus: tuple = (1.0, 0.8, 0.6)
    phis: tuple = (0.0, 0.05, 0.1, 0.2)
    # heavy vs light tails (Kwa et al.) and best-of-n
    tail_arms: int = 2**14
    tail_df: float = 1.5  # Student-t error: heavy (no MGF); the light twin is N(0, 1)
    bon_max_log2: int = 12
    # the two-world test (sharper than the paper)
    sharp_cells: tuple = ((0.05, 0.1), (0.1, 0.05), (0.1, 0.1))  # (alpha, eps)
    sharp_n_max: int = 8192
    seed: int = 0

    def __post_init__(self):
        for name, lo in (("seeds", 1), ("n_contexts", 8), ("d", 3), ("n_labels", 1), ("n_lams", 5), ("mc_samples", 256),
                         ("audit_size", 16), ("tail_arms", 64), ("bon_max_log2", 2), ("sharp_n_max", 16), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}; got {v!r}")
        for name, lo, hi, lc, hc in (("alpha", 0, 0.5, False, False), ("eps", 0, 0.5, False, False), ("spread", 0, 1, True, False),
                                      ("hard_corr", 0, math.inf, True, False), ("sharpness", 0, math.inf, False, False),
                                      ("easy_margin", 0, 1, True, False), ("u_hack", 0, 0.5, True, False),
                                      ("context_sd", 0, math.inf, False, False), ("ridge", 0, math.inf, False, False),
                                      ("lam_max", 0, math.inf, False, False), ("keep_factor", 0, math.inf, False, False),
                                      ("temperature", 1, math.inf, False, False), ("tail_df", 0, 2, False, True)):
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
            ok = ok and (v >= lo if lc else v > lo) and (v <= hi if hc else v < hi)
            if not ok:
                raise ValueError(f"{name} must be in {'[' if lc else '('}{lo}, {hi}{']' if hc else ')'}; got {v!r}")
        if self.eps * (1 + self.spread) >= 0.5:
            raise ValueError(f"eps * (1 + spread) must be < 1/2; got {self.eps * (1 + self.spread)!r}")
        if self.keep_factor * self.alpha >= 1:
            raise ValueError(f"keep_factor * alpha must be < 1 (a keep rate); got {self.keep_factor * self.alpha!r}")
        if not 1 <= round(self.alpha * self.n_contexts) < self.n_contexts:
            raise ValueError(f"alpha * n_contexts must round to at least one hard context; got {self.alpha * self.n_contexts!r}")
        if not isinstance(self.variants, tuple) or "hacked" not in self.variants or not set(self.variants) <= set(VARIANTS):
            raise ValueError(f"variants must be a tuple of {', '.join(VARIANTS)} that includes 'hacked'; got {self.variants!r}")
        for name, lo, hi in (("taus", 0.0, 1.0), ("phis", 0.0, 1.0)):
            v = getattr(self, name)
            if not isinstance(v, tuple) or not v or not all(isinstance(x, (int, float)) and lo <= x <= hi for x in v):
                raise ValueError(f"{name} must be a non-empty tuple of numbers in [{lo}, {hi}]; got {v!r}")
        if any(t <= p for t in self.taus for p in self.phis):
            raise ValueError("every tau must exceed every phi (a flagger with tau <= phi carries no information, D.3)")
        if not self.sharp_cells or not all(len(c) == 2 and 0 < c[0] < 1 and 0 < c[1] < 0.5 for c in self.sharp_cells):
            raise ValueError(f"sharp_cells must be (alpha, eps) pairs with alpha in (0, 1), eps in (0, 1/2); got {self.sharp_cells!r}")

    @property
    def lams(self):
        import numpy as np

        return np.linspace(0.0, self.lam_max, self.n_lams)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


PRESETS = {
    "quick": LawsConfig(),
    "paper": LawsConfig(seeds=10, n_contexts=512, n_labels=40960, n_lams=97, mc_samples=2**17, tail_arms=2**16,
                        bon_max_log2=14, sharp_n_max=32768, audit_size=2000),
}


def preset(name: str, **overrides) -> LawsConfig:
    """A named preset (quick: ~1 minute on 2 CPU cores; paper: twice the seeds and sizes) with field overrides."""
    if name not in PRESETS:
        raise ValueError(f"laws preset must be one of {sorted(PRESETS)}; got {name!r}")
    return dataclasses.replace(PRESETS[name], **overrides)


def config_hash(cfg: LawsConfig) -> str:
    """12 hex digits of the SHA-256 of the config's JSON: names the stage cache of a run folder."""
    return hashlib.sha256(json.dumps(cfg.to_json(), sort_keys=True, default=str).encode()).hexdigest()[:12]
