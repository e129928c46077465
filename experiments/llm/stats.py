"""Statistics of the LLM Murphy experiments: per-seed fits, bootstrap intervals over seeds, one-sided
tests, and the verdicts the findings quote.

The unit of replication is the seed (a fresh feedback sample, reward model and training run). For
every (task, method, variant) each seed's curve gives a least-squares line G = a + b d of the paper's
gap G(pi) = U(pi+) - U(pi) against the pressure d = sqrt(KL(pi || pi_ref)), its peak true utility and
where it occurs, and its final point; the same line is fitted to the gap of each stratum, G_hard on the
hard prompts (where the feedback is biased: the law) and G_easy on the easy ones (the control). Across
seeds:

* an estimate is the mean over seeds; its interval is the 90 % Student t interval over seeds
  (``t_mean``): with 3-5 seeds a percentile bootstrap is far too narrow (it cannot reach past the
  extreme seeds); ``bootstrap_mean`` stays for statistics with many replicates;
* "G grows with pressure" is tested one-sided on the per-seed slopes (Student t, H0: mean slope <= 0,
  ``t_greater``); an intervention's change (variant minus base on the same seeds) likewise;
* a verdict (``verdict``) is "holds" when p < ``ALPHA`` and the 90 % interval excludes 0 on the claimed
  side, "does not hold" when the same is true of the opposite sign, else "undecided"; with fewer
  than ``MIN_SEEDS`` seeds it is always "undecided".
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

ALPHA = 0.05  # one-sided level of every test
LEVEL = 0.90  # bootstrap interval
B = 4000  # bootstrap resamples
MIN_SEEDS = 3  # no verdict from fewer seeds
HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided"


def _finite(x) -> np.ndarray:
    x = np.asarray(x, np.float64).ravel()
    return x[np.isfinite(x)]


def bootstrap_mean(x, level: float = LEVEL, resamples: int = B, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean over seeds and its percentile-bootstrap interval (nan with < 2 values)."""
    x = _finite(x)
    if x.size == 0:
        return (math.nan,) * 3
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, x.size, (resamples, x.size))
    means = x[idx].mean(1)
    q = (1 - level) / 2
    return m, float(np.quantile(means, q)), float(np.quantile(means, 1 - q))


def t_mean(x, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean over seeds and its Student t interval, mean -+ t_{(1+level)/2, n-1} sd / sqrt(n)
    (nan ends with < 2 values; a zero-width interval when every value is the same)."""
    x = _finite(x)
    if x.size == 0:
        return (math.nan,) * 3
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    h = float(sps.t.ppf(0.5 + level / 2, x.size - 1)) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return m, m - h, m + h


def t_greater(x) -> float:
    """One-sided p-value of H0: E x <= 0 against E x > 0 (Student t over seeds; nan with < 2 values)."""
    x = _finite(x)
    if x.size < 2:
        return math.nan
    sd = x.std(ddof=1)
    if sd == 0:
        return 0.0 if x.mean() > 0 else 1.0
    t = x.mean() / (sd / math.sqrt(x.size))
    return float(sps.t.sf(t, x.size - 1))


def verdict(p: float, lo: float, hi: float, n: int, direction: int = 1) -> str:
    """The verdict on "the effect has sign ``direction``" (+1: positive, -1: negative).

    holds: n >= MIN_SEEDS, p < ALPHA and the interval excludes 0 on that side; does not hold: the same
    on the other side (1 - p < ALPHA, the one-sided test of the opposite sign, and the interval wholly
    there); undecided otherwise (including too few seeds).
    """
    if n < MIN_SEEDS or not all(map(math.isfinite, (p, lo, hi))):
        return UNDECIDED
    lo_s, hi_s = (lo, hi) if direction > 0 else (-hi, -lo)
    if p < ALPHA and lo_s > 0:
        return HOLDS
    if 1.0 - p < ALPHA and hi_s < 0:
        return FAILS
    return UNDECIDED


def line(x, y) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line y = a + b x (nan when x does not vary; slope exactly 0
    when y does not vary, so that a flat curve is not read as a rounding-level trend)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return math.nan, math.nan
    if np.ptp(y[ok]) <= 1e-12 * max(1.0, float(np.abs(y[ok]).max())):
        return float(y[ok].mean()), 0.0
    b, a = np.polyfit(x[ok], y[ok], 1)
    return float(a), float(b)


def seed_summary(curve: list[dict], y: str = "G") -> dict:
    """One seed's curve (points sorted by pressure) -> its lines (G, G_hard, G_easy and the normalised
    divergence against d), peak and final point."""
    c = sorted(curve, key=lambda r: r["pressure"])
    d = np.asarray([r["d"] for r in c], float)
    a, b = line(d, [r[y] for r in c])
    div_a, div_b = line(d, [r["gap"] for r in c])
    strata = {}
    for s in ("hard", "easy"):
        sa, sb = line(d, [r.get(f"G_{s}", math.nan) for r in c])
        strata.update({f"intercept_{s}": sa, f"slope_{s}": sb, f"final_G_{s}": float(c[-1].get(f"G_{s}", math.nan))})
    true = np.asarray([r["true"] for r in c], float)
    i = int(np.nanargmax(true))
    return {"intercept": a, "slope": b, "div_intercept": div_a, "div_slope": div_b, **strata,
            "peak_true": float(true[i]), "peak_d": float(d[i]), "peak_at": c[i]["pressure"],
            "turns_down": float(true[-1] < true[i]), "start_true": float(true[0]), "final_true": float(true[-1]),
            "final_G": float(c[-1]["G"]), "final_d": float(d[-1]), "d_max": float(np.nanmax(d)) if np.isfinite(d).any()
            else math.nan, "final_hacked": float(c[-1]["hacked"]), "start_hacked": float(c[0]["hacked"]),
            "true_change": float(true[-1] - true[0]), "final_proxy_n": float(c[-1]["proxy_n"]),
            "final_gap": float(c[-1]["gap"]), "points": len(c)}


SUMMARISED = ("slope", "intercept", "div_slope", "slope_hard", "intercept_hard", "slope_easy", "intercept_easy",
              "peak_true", "peak_d", "start_true", "final_true", "true_change", "final_G", "final_G_hard", "final_G_easy",
              "final_d", "d_max", "final_hacked", "start_hacked", "final_proxy_n", "final_gap", "turns_down")


def summarise(per_seed: list[dict]) -> dict:
    """Mean and Student t interval over seeds of every per-seed statistic; the tests of G and of G_hard
    growing with pressure (``p_grows``/``grows``, ``p_grows_hard``/``grows_hard``) and of G_easy
    (``p_grows_easy``/``grows_easy``, the control)."""
    out = {"seeds": len(per_seed), "points": min((s["points"] for s in per_seed), default=0)}
    for k in SUMMARISED:
        m, lo, hi = t_mean([s.get(k, math.nan) for s in per_seed])
        out[k], out[k + "_lo"], out[k + "_hi"] = m, lo, hi
    for tag in ("", "_hard", "_easy"):
        slopes = [s.get("slope" + tag, math.nan) for s in per_seed]
        out["p_grows" + tag] = t_greater(slopes)
        out["grows" + tag] = verdict(out["p_grows" + tag], out["slope" + tag + "_lo"], out["slope" + tag + "_hi"],
                                     len(_finite(slopes)))
    return out


def paired_effect(base: dict, variant: dict, key: str) -> dict:
    """variant minus base of per-seed statistic ``key`` on the seeds both have: mean, interval, and the
    one-sided p-value of a decrease (the claim an intervention makes)."""
    seeds = sorted(set(base) & set(variant))
    diff = [variant[s][key] - base[s][key] for s in seeds]
    m, lo, hi = t_mean(diff)
    p = t_greater([-x for x in diff])
    return {"diff": m, "lo": lo, "hi": hi, "p_lower": p, "seeds": len(_finite(diff)),
            "lowers": verdict(p, lo, hi, len(_finite(diff)), direction=-1)}


def matched_G(curve_a: list[dict], curve_b: list[dict]) -> tuple[float, float]:
    """G of two curves at a common pressure d* = the smaller of their largest d (linear interpolation in d):
    an intervention compared with the base at the same KL, not at the same knob setting."""
    def xy(c):
        c = sorted((r for r in c if math.isfinite(r["d"])), key=lambda r: r["d"])
        return np.asarray([r["d"] for r in c]), np.asarray([r["G"] for r in c])
    (da, ga), (db, gb) = xy(curve_a), xy(curve_b)
    if da.size < 2 or db.size < 2:
        return math.nan, math.nan
    d = min(da.max(), db.max())
    return float(np.interp(d, da, ga)), float(np.interp(d, db, gb))
