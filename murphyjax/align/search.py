"""Inference-time and filtering methods against the proxy: best-of-n and ReST's selection step.

Best-of-n (related-theory.md 1.2, 2): from N >= n samples per prompt, sorted by the selection key
(the proxy, or the MAPS-shaped proxy), the expected score of the best of n is estimated without
bias by Nakano et al.'s weights (``theory.bon_unbiased_estimate``) for every n at once. Its KL to
the sampling policy is reported two ways: the usual ``log n - (n-1)/n`` (an upper bound, Beirami
et al. 2024) and the exact KL of best-of-n on the empirical law of the N samples
(``theory.bon_kl``, ties handled), which is much smaller when the policy has large atoms.

ReST (Gulcehre et al. 2023): Grow (sample from the current policy), Improve (keep the samples whose
proxy clears a threshold, fine-tune on them), repeat; ``rest_select`` is the Improve filter.
"""

from __future__ import annotations

import numpy as np

from murphyjax import theory


def bon_curve(keys, values: dict, ns, rng: np.random.Generator | None = None) -> dict:
    """Best-of-n means over prompts for each n in ``ns``.

    Args:
      keys: (M, N) selection keys (higher is better) of N samples for each of M prompts.
      values: name -> (M, N) per-sample quantities to average under best-of-n (proxy, U, H, ...).
      ns: increasing n values, each <= N.
      rng: breaks ties in ``keys`` uniformly at random (default: a fixed seed).
    Returns dict: ``n``, ``kl_bound`` (log n - (n-1)/n), ``kl_exact`` (mean over prompts of the exact
    best-of-n KL on the empirical law), and for every value name the (len(ns),) array of means.
    """
    keys = np.asarray(keys, float)
    M, N = keys.shape
    rng = np.random.default_rng(0) if rng is None else rng
    tie = rng.random(keys.shape)
    order = np.lexsort((tie, keys), axis=1)  # increasing key, random among ties
    out = {"n": np.asarray(ns, int), "kl_bound": np.asarray(theory.bon_kl_bound(np.asarray(ns, float)))}
    for name, v in values.items():
        s = np.take_along_axis(np.asarray(v, float), order, 1)
        out[name] = np.asarray([float(np.mean(theory.bon_unbiased_estimate(s, int(n)))) for n in ns])
    out["kl_exact"] = np.asarray([float(np.mean(bon_kl_empirical(keys, int(n)))) for n in ns])
    return out


def bon_kl_empirical(keys, n: int) -> np.ndarray:
    """Exact KL(best-of-n || empirical law) per row of (M, N) keys, each sample of mass 1/N.

    Row-vectorised ``theory.bon_kl`` with ties: a tie group spanning cumulative mass (F_lo, F_hi]
    gets F_hi^n - F_lo^n, split evenly within the group (Beirami et al. 2024).
    """
    k = np.asarray(keys, float)
    N = k.shape[1]
    f_hi = (k[:, None, :] <= k[:, :, None]).sum(-1) / N
    f_lo = (k[:, None, :] < k[:, :, None]).sum(-1) / N
    q = (f_hi**n - f_lo**n) / ((f_hi - f_lo) * N)
    kl = np.sum(np.where(q > 0, q * np.log(np.maximum(q, 1e-300) * N), 0.0), axis=1)
    return np.maximum(kl, 0.0)  # round-off below 0 at n = 1


def rest_select(keys, keep_fraction: float) -> np.ndarray:
    """Indices of the samples ReST's Improve step keeps: the top ``keep_fraction`` by key (ties kept)."""
    keys = np.asarray(keys, float)
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must lie in (0, 1]; got {keep_fraction!r}")
    k = max(1, int(np.ceil(keep_fraction * keys.size)))
    return np.flatnonzero(keys >= np.sort(keys)[keys.size - k])
