"""Configuration of the bandit reproduction (paper v3, Section 3.5) and its two presets.

``LabConfig`` is a plain frozen dataclass; every field is validated in ``__post_init__`` with a
one-line message naming the field and its valid range. ``preset("quick" | "paper")`` returns the
two configurations of ``murphyjax reproduce``; ``config_hash`` keys the resumable chunk store.

Choices the paper leaves open (v3 gives no n grid, lambda grid, eta, audit size or mu_h) are
fields here with the defaults stated in their comments.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

PAPER_ALPHAS = (0.01, 0.05, 0.1)
PAPER_EPSS = (0.05, 0.1)
PAPER_DS = (10, 50)


@dataclasses.dataclass(frozen=True)
class LabConfig:
    # the grid of Section 3.5
    alphas: tuple = PAPER_ALPHAS
    epss: tuple = PAPER_EPSS
    ds: tuple = PAPER_DS
    seeds: int = 10  # the paper's 10 seeds; medians with 90 % intervals across them
    n_grid: tuple = tuple(2**k for k in range(6, 16))  # rounds (draws) 64 ... 32768, nested
    lam_grid: tuple = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, math.inf)  # inf = greedy sign(s_hat)
    rhos: tuple = (0.0, 0.5, 1.0)  # D2 shifts, alpha_rho = (1 + rho) alpha
    eta_fracs: tuple = (0.3, 0.1, 0.03, 0.01, 0.003)  # D3 targets eta as fractions of gamma
    # simulator sizes
    replicates: int = 32  # independent testing-problem transcripts per seed (minimax error panel)
    rep_batch: int = 4  # replicates evaluated together (memory knob only; results do not depend on it)
    eval_size: int = 2048  # evaluation contexts per stratum (easy and hard)
    audit_size: int = 1000  # audited contexts (hardness and best action revealed), Section 5.1/5.6
    # environment and channel (Section 3.1; see murphyjax.bandits.envs / channels)
    easy_eps: float = 0.3  # easy-context annotators right w.p. 0.8 (the logistic learner needs it)
    hard_mean: tuple = (1.0, 0.0, 3.0)  # mu_h on (theta, upsilon, xi)
    reward_scale: float = 1.0  # gamma = alpha * reward_scale
    # learners
    ridge: float = 1.0  # prior precision of the logistic model
    newton_iters: tuple = (8, 4)  # Newton steps at the first grid point / warm-started later ones
    active_frac: float = 0.5  # margin sampling asks when |s_hat| is below this quantile
    ref_index: int = 4  # grid index of the proxy whose residuals train the residual flagger
    keep_factor: float = 2.0  # flaggers keep a fraction keep_factor * alpha of contexts (B.7)
    p_easy: float = 0.1  # routed learners label unflagged draws with this probability
    # sequential protocols
    sprt_delta: float = 0.05  # SPRT error targets (delta, delta), B.5; also the active rule's threshold
    abstain_band: float = 0.45  # B.11: escalate while the posterior lies in [1/2 - band, 1/2 + band]
    abstain_cost: float = 0.1  # B.11: cost c of one escalated label
    synth_tau: float = 0.8  # the synthetic (tau, phi) flagger of Theorem 3
    synth_phi: float = 0.02
    # bookkeeping
    seed: int = 0
    chunk_rows: int = 10  # rows (cell x seed) per saved chunk; padded to a multiple of the devices

    def __post_init__(self):
        _tuple(self, "rhos", lambda r: r >= 0, ">= 0")
        _tuple(self, "alphas", lambda a: 0 < a and (1 + max(self.rhos or (0,))) * a < 1,
               "in (0, 1) with (1 + max rho) alpha < 1")
        _tuple(self, "epss", lambda e: 0 < e < 0.5, "in (0, 0.5)")
        _tuple(self, "ds", lambda d: isinstance(d, int) and d >= 3, "integers >= 3")
        _tuple(self, "n_grid", lambda n: isinstance(n, int) and n >= 2, "integers >= 2")
        if list(self.n_grid) != sorted(set(self.n_grid)):
            raise ValueError(f"n_grid must be strictly increasing; got {self.n_grid!r}")
        _tuple(self, "lam_grid", lambda v: v >= 0, "non-negative (inf allowed)")
        _tuple(self, "eta_fracs", lambda f: 0 < f < 0.5, "in (0, 0.5) (P(error) = 1/2 needs no data)")
        _int(self, "seeds", 1)
        _int(self, "replicates", 1)
        _int(self, "rep_batch", 1)
        _int(self, "eval_size", 16)
        _int(self, "audit_size", 16)
        _int(self, "seed", 0)
        _int(self, "chunk_rows", 1)
        if self.replicates % self.rep_batch:
            raise ValueError(f"replicates ({self.replicates}) must be a multiple of rep_batch ({self.rep_batch})")
        if not 0 <= self.ref_index < len(self.n_grid):
            raise ValueError(f"ref_index must index n_grid (0..{len(self.n_grid) - 1}); got {self.ref_index!r}")
        if len(self.hard_mean) != 3:
            raise ValueError(f"hard_mean must have 3 coefficients (theta, upsilon, xi); got {self.hard_mean!r}")
        if len(self.newton_iters) != 2 or min(self.newton_iters) < 1:
            raise ValueError(f"newton_iters must be two integers >= 1; got {self.newton_iters!r}")
        for name, lo, hi, closed in [("easy_eps", 0.0, 0.5, (True, False)), ("reward_scale", 0.0, 1.0, (False, True)),
                                     ("ridge", 0.0, math.inf, (False, False)), ("active_frac", 0.0, 1.0, (False, True)),
                                     ("p_easy", 0.0, 1.0, (False, True)), ("sprt_delta", 0.0, 0.5, (False, False)),
                                     ("abstain_band", 0.0, 0.5, (False, False)), ("abstain_cost", 0.0, 1.0, (False, False)),
                                     ("synth_tau", 0.0, 1.0, (False, True)), ("synth_phi", 0.0, 1.0, (True, True)),
                                     ("keep_factor", 0.0, math.inf, (False, False))]:
            _range(self, name, lo, hi, *closed)
        if self.keep_factor * max(self.alphas) >= 1:
            raise ValueError(f"keep_factor * max(alphas) must be < 1 (a keep rate); got {self.keep_factor * max(self.alphas)!r}")

    @property
    def cells(self):
        """(d, alpha, eps) in the order rows are laid out (d outermost: one compiled shape per d)."""
        return [(d, a, e) for d in self.ds for a in self.alphas for e in self.epss]

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: ([("inf" if math.isinf(x) else x) for x in v] if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_json(cls, d: dict) -> "LabConfig":
        def conv(v):
            return tuple(math.inf if x == "inf" else x for x in v) if isinstance(v, list) else v
        return cls(**{k: conv(v) for k, v in d.items()})


def _fail(name, rule, got):
    raise ValueError(f"{name} must be {rule}; got {got!r}")


def _tuple(cfg, name, ok, rule):
    v = getattr(cfg, name)
    if not isinstance(v, tuple) or not v:
        _fail(name, "a non-empty tuple", v)
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or (isinstance(x, float) and math.isnan(x)) or not ok(x):
            _fail(f"every entry of {name}", rule, x)


def _int(cfg, name, lo):
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        _fail(name, f"an integer >= {lo}", v)


def _range(cfg, name, lo, hi, lo_closed, hi_closed):
    v = getattr(cfg, name)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
    ok = ok and (v >= lo if lo_closed else v > lo) and (v <= hi if hi_closed else v < hi)
    if not ok:
        _fail(name, f"in {'[' if lo_closed else '('}{lo}, {hi}{']' if hi_closed else ')'}", v)


PRESETS = {
    # the full protocol of Section 3.5
    "paper": LabConfig(),
    # a reduced grid for a first look: d = 10 only, 5 seeds, n up to 8192, fewer replicates
    "quick": LabConfig(ds=(10,), seeds=5, n_grid=tuple(2**k for k in range(6, 14)), replicates=8,
                       eval_size=1024, audit_size=1000, ref_index=3, chunk_rows=10),
}


def preset(name: str, **overrides) -> LabConfig:
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {name!r}")
    return dataclasses.replace(PRESETS[name], **overrides)


def config_hash(cfg: LabConfig) -> str:
    """First 12 hex digits of the SHA-256 of the resolved config (keys the resumable chunk store)."""
    blob = json.dumps(cfg.to_json(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
