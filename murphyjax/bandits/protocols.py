"""Query protocols for the two-point testing problem (arXiv:2509.05381 v3, Sections 2.3-2.8, B.5, B.7, B.11).

A learner sees rounds t = 0, 1, ... : a context x_t ~ mu, a decision I_t to ask for a label, and
the label. It outputs w_hat and the policy pi^{w_hat}, whose value gap is gamma 1{w_hat != w}
(note 9.5). Every protocol counts **draws** (rounds consumed) and **labels** (queries answered)
separately (note 9.3), the queried hard rounds ("hits", Lemma 2) and the transcript KL of Lemma 4
(``kl``: the sum over queried rounds of KL(P^+(Y_t | what the learner sees) || P^-(...)); its
expectation under P^+ is the transcript KL, which Theorem 1 bounds by n alpha kappa(eps)). ``llr``
is the realised log-likelihood ratio of the labels (same mean under P^+).

Inputs are one replicate's per-round arrays (vmap over replicates and worlds):
  v   (n,) votes in {-1, +1}: +1 when the label favours pi^+(x_t) (``2 Z - 1``);
  z   (n,) hardness in {0, 1}; ph (n,) P(z = 1 | x_t) for learners that see x only;
and a static grid of budgets (rounds). Errors count a tie (statistic exactly 0) as 1/2: the
expected error of a fair tie-breaking coin, which lowers Monte Carlo variance.

Cost: fixed-sample statistics are read at the grid through segment sums (``prefix_at``); only
the sequential protocols scan a running sum to find their stopping time. Inside ``vmap`` over
worlds, arrays that do not depend on w (hardness, P(hard | x), per-round KL) are computed once.

Protocols:
  ``majority_all``   oracle-free: label every round, majority of all votes.
  ``bayes_lr``       oracle-free: label every round, Bayes-optimal likelihood-ratio test given x
                     (weights 2 atanh(2 eps P(hard | x))).
  ``active_lr``      oracle-free, uncertainty-driven: label while the posterior on w is uncertain
                     (|LLR| < b), then stop asking (rounds keep counting).
  ``routed_majority`` keep rounds with flag = 1 and take the majority (Theorem 2 with the oracle
                     flag = z; Theorem 3 / B.7 with a noisy or score flagger, including the false
                     positives' diluting labels that the paper ignores, note 9.6).
  ``sprt``           oracle routing + Wald's SPRT on hits (B.5) with error targets (delta, delta).
  ``abstain``        oracle routing + abstention/escalation (B.11): escalate (buy a label at cost c)
                     while the posterior lies in [1/2 - band, 1/2 + band], then act.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from murphyjax.bandits import channels

F32 = jnp.float32


# --------------------------------------------------------------------------- generic machinery
def _error(S, w):
    """1{sign(S) != w}, 1/2 on a tie."""
    return jnp.where(S * w > 0, 0.0, jnp.where(S == 0, 0.5, 1.0)).astype(F32)


def prefix_at(x, grid):
    """sum_{t < n} x_t for every n of the (static, increasing) grid: O(len(x)) with one reduction.

    Rounds are summed in blocks of b = gcd(grid) (one reshape + sum), the block sums are
    accumulated and read at n / b: three array ops whatever the grid's length (a full running sum
    is only needed to locate a stopping time)."""
    b = math.gcd(*grid)
    n = grid[-1]
    blocks = jnp.sum(x[..., :n].reshape(x.shape[:-1] + (n // b, b)), axis=-1)
    return jnp.cumsum(blocks, axis=-1)[..., jnp.asarray([g // b - 1 for g in grid])]


def _llr_terms(v, p):
    """(per-round KL, realised LLR) for a label with P_w(Z = 1) = 1/2 + w (p - 1/2).

    With e = p - 1/2 the two worlds' laws are Ber(1/2 + e) and Ber(1/2 - e): the LLR of a vote v is
    v a with a = log((1/2 + e)/(1/2 - e)) = 2 atanh(2e), and the KL is 2 e a (= kappa(e), Lemma 1).
    One atanh per round instead of four logs (``channels.label_kl`` is the general form).
    """
    e = p - 0.5
    a = 2.0 * jnp.arctanh(2.0 * e)
    return 2.0 * e * a, v * a


def fixed_sample(stat_inc, counters, grid, w):
    """Non-sequential test: w_hat = sign(sum_{t < n} stat_inc_t) at every budget n in ``grid``.

    ``counters`` maps names to per-round arrays summed up to n. Returns a dict of (len(grid),)
    arrays: err, draws (= n) and the counters.
    """
    out = {k: prefix_at(c, grid) for k, c in counters.items()}
    out["err"] = _error(prefix_at(stat_inc, grid), w)
    out["draws"] = jnp.asarray(grid, F32)
    return out


def sequential(path, threshold, cum_counters, grid, w):
    """Sequential test on a running statistic ``path`` (already summed): stop at the first t with
    |path_t| >= threshold; with budget n decide at the stopping time if it comes before n, else at n.

    ``cum_counters`` are running sums read at the decision index. Returns err, draws (rounds
    consumed: stop + 1 or n), the counters, ``stopped`` and ``stop`` (len(path) if never).
    """
    crossed = jnp.abs(path) >= threshold
    stop = jnp.where(crossed.any(), jnp.argmax(crossed), path.shape[0])
    g = jnp.asarray(grid)
    idx = jnp.minimum(stop, g - 1)
    out = {k: c[idx] for k, c in cum_counters.items()}
    out["err"] = _error(path[idx], w)
    out["draws"] = (idx + 1).astype(F32)
    out["stopped"] = (stop < g).astype(F32)
    out["stop"] = stop
    return out


def votes(u, z, w, eps, easy_eps=0.0):
    """Votes v = 2Z - 1 relative to pi^+ from uniforms u under world w (Massart channel, note 9.1)."""
    return 2.0 * channels.bernoulli(u, channels.massart_p(z, w, eps, easy_eps)) - 1.0


# --------------------------------------------------------------------------- oracle-free
def majority_all(v, ph, eps, grid, w):
    """Label every round; w_hat = sign(sum v). Oracle-free: error ~ exp(-2 n alpha^2 eps^2) (note 9.4)."""
    kl, llr = _llr_terms(v, 0.5 + eps * ph)
    return fixed_sample(v, {"labels": jnp.ones_like(v), "hits": ph, "kl": kl, "llr": llr}, grid, w)


def bayes_lr(v, ph, eps, grid, w):
    """Label every round; Bayes-optimal (equal priors) test given x: sign(sum v 2 atanh(2 eps ph)).

    P_w(Z = 1 | x) = 1/2 + w eps P(hard | x) under the symmetric easy channel, so each vote's LLR
    is v log((1/2 + eps ph)/(1/2 - eps ph)) = 2 v atanh(2 eps ph). ``hits`` counts E[z | x] = ph.
    """
    kl, llr = _llr_terms(v, 0.5 + eps * ph)
    return fixed_sample(llr, {"labels": jnp.ones_like(v), "hits": ph, "kl": kl, "llr": llr}, grid, w)


def active_lr(v, ph, eps, threshold, grid, w):
    """Uncertainty-driven active rule: ask while |LLR_{t-1}| < threshold (x-only LLR), then stop asking.

    The query decision depends on the history only (predictable), so Lemma 2 and Theorem 1 apply.
    """
    kl, llr = _llr_terms(v, 0.5 + eps * ph)
    path = jnp.cumsum(llr)
    t1 = jnp.arange(1, v.shape[0] + 1, dtype=F32)
    return sequential(path, threshold, {"labels": t1, "hits": jnp.cumsum(ph), "kl": jnp.cumsum(kl), "llr": path}, grid, w)


# --------------------------------------------------------------------------- routed
def routed_majority(v, z, flag, eps, grid, w, ph=None):
    """Keep rounds with flag = 1, label them, w_hat = majority of their votes (Theorems 2-3, B.7).

    ``flag = z`` is the calibration oracle h(x) = 1{x in X_hard}. For a noisy flagger the false
    positives' labels are symmetric and dilute the vote (note 9.6). The transcript KL counts what
    the learner observes: with the oracle the hardness itself (kappa(eps) per hit); with an
    x-only flagger the label law given x (pass ``ph`` = P(hard | x)).
    """
    kl, llr = _llr_terms(v, 0.5 + eps * (z if ph is None else ph))
    return fixed_sample(flag * v, {"labels": flag, "hits": flag * z, "kl": flag * kl, "llr": flag * llr}, grid, w)


def _routed_walk(v, z, eps):
    """Oracle-routed integer walk sum z v and the running counters shared by SPRT and abstention."""
    L = 2.0 * jnp.arctanh(2.0 * jnp.asarray(eps, jnp.float64))
    walk = jnp.cumsum(z * v)
    hits = jnp.cumsum(z)
    kl = (2.0 * eps * L).astype(F32) * hits  # kappa(eps) per hit
    return L, walk, {"labels": hits, "hits": hits, "kl": kl, "llr": L.astype(F32) * walk}


def sprt(v, z, eps, delta, grid, w):
    """Oracle routing + Wald's SPRT on hits (B.5): stop when |LLR| >= log((1 - delta)/delta).

    Each hit moves the LLR by +-L, L = 2 atanh(2 eps), so the test stops when the integer walk
    reaches +-k, k = ceil(log((1 - delta)/delta) / L) (exact in float32; ``theory.sprt_exact``
    gives its error and expected hits).
    """
    L, walk, cum = _routed_walk(v, z, eps)
    k = jnp.ceil(jnp.log((1.0 - delta) / delta) / L - 1e-9).astype(F32)
    return sequential(walk, k, cum, grid, w)


def abstain(v, z, eps, band, cost, grid, w):
    """Abstention with escalation on hard contexts (B.11), oracle routing.

    On a hard round the learner escalates (buys a label at cost ``cost``) while its posterior
    P(w = + | labels) lies in [1/2 - band, 1/2 + band], i.e. while |LLR| <= 2 atanh(2 band);
    afterwards it acts with w_hat on every later hard round. Returns, besides the usual fields,
    ``escalation_cost`` = cost x labels and ``wrong_acts`` = hard rounds acted on with the wrong
    w_hat before the budget n (each costs the reward scale s; easy rounds cost nothing).
    Note: B.11's "order eps^-2 log(1/delta) hits" holds with delta read as 1/2 - band.
    """
    L, walk, cum = _routed_walk(v, z, eps)
    k = jnp.floor(2.0 * jnp.arctanh(2.0 * jnp.asarray(band, jnp.float64)) / L + 1e-9).astype(F32) + 1.0
    out = sequential(walk, k, cum, grid, w)
    g = jnp.asarray(grid)
    hits = cum["hits"]
    stop = out["stop"]
    after = jnp.where(stop < g, hits[g - 1] - hits[jnp.minimum(stop, g - 1)], 0.0)
    out["escalation_cost"] = cost * out["labels"]
    out["wrong_acts"] = after * (out["err"] > 0.5)
    out["hard_rounds"] = hits[g - 1]
    out["draws"] = jnp.asarray(grid, F32)  # abstention keeps acting: every round is consumed
    return out
