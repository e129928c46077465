"""Directional feedback bias: annotators who prefer a fixed "hacked" action on hard contexts.

The symmetric Massart channel of Section 2.2 biases labels on X_hard toward a world-dependent
action; in the Section 3.1 environment that bias points nowhere on average, Cov(H, s_hat) is ~0
and Propositions 1-3 and B.4 never bind. Real annotator bias *points somewhere* (the agreeable,
the longer, the confident answer). This module builds that channel on a finite two-action
bandit, so that every law of the paper can be evaluated exactly (finite sums, float64) and
simulated (sampling, float32):

* contexts x_k in R^d, k = 1..K, law mu uniform; a fraction alpha = K_h / K is hard (exact);
  hard contexts sit ``hard_shift`` along a nuisance direction xi (so an x-only flagger or a
  linear proxy can find them);
* true utility U(x, a) in [0, 1]: on easy contexts U(x, a_1) = (1 + Delta(x)) / 2,
  U(x, a_0) = (1 - Delta(x)) / 2 with Delta(x) = sign(theta^T x) (m + (1 - m) |tanh(theta^T x)|),
  so easy contexts have a true margin |Delta| >= m (``easy_margin``); on hard contexts the hacked
  action a_1 is bad, U(x, a_1) = u_hack, U(x, a_0) = 1 - u_hack;
* labels Y = 1{a_1 preferred}: on easy contexts Bradley-Terry on the truth,
  P(Y = 1 | x) = sigmoid(sharpness Delta(x)); on hard contexts P(Y = 1 | x) = 1/2 + eps(x)
  whatever the truth (``direction="hacked"``), or 1/2 + c_k eps(x) with a random sign c_k per
  hard context (``direction="symmetric"``: biased, but toward no fixed action);
* variants: eps(x) = eps (1 + spread tanh(upsilon^T x)) (bias strength varying with x, B.1), and
  proxy-correlated hardness: the hard subset is drawn with weights exp(hard_corr theta^T x), so
  contexts where the proxy is high are more often hard.

The proxy is a logistic preference model on phi(x) = [x, 1, c e_k] (Section 3.2's linear model
plus a per-context effect with prior sd c = ``context_sd`` logits: a reward model that both
generalises and memorises) fitted to n labels; s_hat = beta^T phi / sharpness is its advantage
of a_1 over a_0 in *utility units*. Its population limit is the channel's own logit,
logit P(Y = 1 | x) / sharpness: Delta(x) on easy contexts and 2 atanh(2 eps(x)) / sharpness on
hard ones (``population_proxy``). And r_hat(x, a_1/a_0) = (1 +- s_hat)/2 is
centred like U (E_{pi_0}[r_hat | x] = E_{pi_0}[U | x] = 1/2, so the Alignment Gap of the base
policy is 0). Both tilts of paper note 9.13 act on it:
  context tilt q_lam ∝ mu exp(lam s_hat) (Section 3.4) and policy tilt
  pi_lam(a_1 | x) = sigmoid(lam s_hat(x)) = pi_0 exp(lam r_hat) / Z for pi_0 uniform (Section 3.2).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from murphyjax.bandits import learners
from murphyjax.theory import validate as V

F32, F64 = jnp.float32, jnp.float64
DIRECTIONS = ("hacked", "symmetric")


class DirectionalEnv(NamedTuple):
    """A finite two-action bandit with a directional channel (float64 arrays, (K,) unless noted)."""

    x: jax.Array  # (K, d) contexts
    mu: jax.Array  # context law
    hard: jax.Array  # H(x) in {0, 1}
    u0: jax.Array  # U(x, a_0)
    u1: jax.Array  # U(x, a_1), a_1 = the hacked action
    p_label: jax.Array  # P(Y = 1{a_1 preferred} = 1 | x)
    eps_x: jax.Array  # eps(x) on hard contexts (0 on easy ones)
    sharpness: jax.Array  # Bradley-Terry sharpness of easy annotators (logit units per utility unit)


def validate(n_contexts, d, alpha, eps, *, spread=0.0, hard_corr=0.0, direction="hacked", hard_shift=2.0,
             u_hack=0.1, sharpness=1.2, easy_margin=0.5):
    """Concrete checks of :func:`make_env`'s arguments (one-line ``ValueError`` naming the argument)."""
    if int(n_contexts) != n_contexts or n_contexts < 4:
        raise ValueError(f"n_contexts must be an integer >= 4; got {n_contexts!r}")
    if int(d) != d or d < 3:
        raise ValueError(f"d must be an integer >= 3 (theta, xi and upsilon need three directions); got {d!r}")
    V.alpha(alpha)
    k_h = int(round(alpha * n_contexts))
    if not 1 <= k_h < n_contexts:
        raise ValueError(f"alpha * n_contexts must round to a hard count in [1, n_contexts); got {alpha * n_contexts!r}")
    V.eps(eps)
    V.interval("spread", spread, 0.0, 1.0, lo_closed=True)
    if eps * (1 + spread) >= 0.5:
        raise ValueError(f"eps (1 + spread) must stay below 1/2; got eps={eps!r}, spread={spread!r}")
    V.nonnegative("hard_corr", hard_corr)
    V.finite("hard_shift", hard_shift)
    V.interval("u_hack", u_hack, 0.0, 0.5, lo_closed=True)
    V.positive("sharpness", sharpness)
    V.interval("easy_margin", easy_margin, 0.0, 1.0, lo_closed=True)
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}; got {direction!r}")
    return k_h


def make_env(key, n_contexts: int, d: int, alpha: float, eps: float, *, spread: float = 0.0, hard_corr: float = 0.0,
             direction: str = "hacked", hard_shift: float = 2.0, u_hack: float = 0.1,
             sharpness: float = 1.2, easy_margin: float = 0.5) -> DirectionalEnv:
    """Draw a directional-bias bandit (see the module docstring for every choice).

    Args:
      key: PRNG key. n_contexts: K. d: dimension (>= 3). alpha: hard fraction (K_h = round(alpha K)).
      eps: bias toward the hacked action on hard contexts, in (0, 1/2).
      spread: eps(x) = eps (1 + spread tanh(upsilon^T x)); 0 = constant bias.
      hard_corr: >= 0; hard contexts drawn with weights exp(hard_corr theta^T x) (0 = at random).
      direction: "hacked" (bias toward a_1) or "symmetric" (toward a random action per context).
      hard_shift: offset of hard contexts along xi. u_hack: U(x, a_1) on hard contexts, in [0, 1/2).
      sharpness: Bradley-Terry sharpness of easy annotators (P(correct | easy) = sigmoid(sharpness |Delta|)).
      easy_margin: m in [0, 1), the smallest true advantage |Delta| on easy contexts.
    """
    k_h = validate(n_contexts, d, alpha, eps, spread=spread, hard_corr=hard_corr, direction=direction,
                   hard_shift=hard_shift, u_hack=u_hack, sharpness=sharpness, easy_margin=easy_margin)
    return draw_env(key, n_contexts, d, k_h, eps, spread, hard_corr, direction == "symmetric", hard_shift, u_hack, sharpness, easy_margin)


def draw_env(key, n_contexts: int, d: int, n_hard: int, eps, spread, hard_corr, symmetric, hard_shift, u_hack, sharpness,
             easy_margin) -> DirectionalEnv:
    """The unchecked core of :func:`make_env` (call ``validate`` first): every argument after ``n_hard``
    may be a traced array, so one compiled function serves every variant (``symmetric`` a 0/1 flag)."""
    kx, kh, kc = jax.random.split(key, 3)
    x = jax.random.normal(kx, (n_contexts, d), F64)
    theta, xi, ups = x[:, 0], x[:, 1], x[:, 2]  # axis-aligned directions (x is isotropic)
    gumbel = jax.random.gumbel(kh, (n_contexts,), F64)
    order = jnp.argsort(-(hard_corr * theta + gumbel))  # Gumbel top-k: P(subset) ∝ prod exp(hard_corr theta^T x)
    hard = jnp.zeros((n_contexts,), F64).at[order[:n_hard]].set(1.0)
    x = x.at[:, 1].set(xi + hard_shift * hard)
    delta = jnp.where(theta >= 0, 1.0, -1.0) * (easy_margin + (1.0 - easy_margin) * jnp.abs(jnp.tanh(theta)))
    u1 = jnp.where(hard > 0, u_hack, 0.5 * (1.0 + delta))
    u0 = jnp.where(hard > 0, 1.0 - u_hack, 0.5 * (1.0 - delta))
    eps_x = hard * eps * (1.0 + spread * jnp.tanh(ups))
    coin = jnp.where(jax.random.bernoulli(kc, 0.5, (n_contexts,)), 1.0, -1.0)
    sign = jnp.where(jnp.asarray(symmetric, bool), coin, 1.0)
    p_label = jnp.where(hard > 0, 0.5 + sign * eps_x, jax.nn.sigmoid(sharpness * delta))
    mu = jnp.full((n_contexts,), 1.0 / n_contexts, F64)
    return DirectionalEnv(x, mu, hard, u0, u1, p_label, eps_x, jnp.asarray(sharpness, F64))


def alpha_of(env: DirectionalEnv):
    """alpha = mu(X_hard)."""
    return jnp.sum(env.mu * env.hard)


def channel_stats(env: DirectionalEnv) -> dict:
    """Exact label statistics of the channel (the quantities the directional tests check).

    Returns ``hacked_pref_hard`` P(label prefers a_1 | hard), ``truth_agree_hard`` P(label prefers
    the truly better action | hard), ``truth_agree_easy`` and ``hacked_pref_easy`` (1/2 when the
    easy contexts are symmetric), ``mean_eps_hard`` E[eps(X) | hard].
    """
    h = env.hard
    best1 = env.u1 > env.u0
    agree = jnp.where(best1, env.p_label, 1.0 - env.p_label)
    m = lambda f, w: jnp.sum(env.mu * w * f) / jnp.sum(env.mu * w)
    return {"hacked_pref_hard": m(env.p_label, h), "truth_agree_hard": m(agree, h), "hacked_pref_easy": m(env.p_label, 1 - h),
            "truth_agree_easy": m(agree, 1 - h), "mean_eps_hard": m(env.eps_x, h)}


def sample_labels(key, env: DirectionalEnv, n: int):
    """n i.i.d. rounds: context index k ~ mu, label Y ~ Ber(p_label(x_k)). Returns (k (n,), y (n,) float32)."""
    kk, ky = jax.random.split(key)
    cdf = jnp.cumsum(env.mu)
    k = jnp.minimum(jnp.searchsorted(cdf / cdf[-1], jax.random.uniform(kk, (n,), F64), side="right"), env.mu.shape[0] - 1)
    y = (jax.random.uniform(ky, (n,), F32) < env.p_label[k].astype(F32)).astype(F32)
    return k, y


def proxy_features(env: DirectionalEnv, context_sd: float = 1.5):
    """phi(x_k) = [x_k, 1, context_sd e_k]: linear part plus a per-context effect (K, d + 1 + K), float32."""
    K = env.x.shape[0]
    return jnp.concatenate([learners.features(env.x.astype(F32)), context_sd * jnp.eye(K, dtype=F32)], axis=1)


def fit_proxy(env: DirectionalEnv, k, y, *, context_sd: float = 1.5, ridge: float = 1.0, iters: int = 12):
    """The learned proxy s_hat (K,) in utility units: logistic MAP fit on ``proxy_features``, / sharpness.

    Prior N(0, I / ridge) on the coefficients, i.e. per-context effects with sd context_sd / sqrt(ridge)
    logits. Rows are aggregated per context first (sufficient statistics: label count and sum), so
    the Newton steps cost O(K^3) whatever n is.
    """
    K = env.x.shape[0]
    cnt = jnp.zeros((K,), F32).at[k].add(1.0)
    pos = jnp.zeros((K,), F32).at[k].add(y)
    return _fit_counts(env, cnt, pos, context_sd, ridge, iters)


def population_proxy(env: DirectionalEnv, n: float = 1e7, *, context_sd: float = 1.5, ridge: float = 1.0, iters: int = 30):
    """The proxy the learner converges to: the same fit on expected counts n mu(x), n mu(x) p(x).

    With n large the prior is negligible and s_hat = logit p(x) / sharpness: the "predicted before
    any data" proxy.
    """
    cnt = (n * env.mu).astype(F32)
    return _fit_counts(env, cnt, cnt * env.p_label.astype(F32), context_sd, ridge, iters)


def channel_logit(env: DirectionalEnv):
    """logit P(Y = 1 | x) / sharpness: the population proxy in closed form (float64)."""
    p = env.p_label
    return (jnp.log(p) - jnp.log1p(-p)) / env.sharpness


def _fit_counts(env, cnt, pos, context_sd, ridge, iters):
    Phi = proxy_features(env, context_sd)
    # a count c with s successes is the weighted pair (y = s/c, weight c): the logistic loss is
    # linear in y, so sum_i [softplus(eta) - y_i eta] = c softplus(eta) - s eta
    ybar = jnp.where(cnt > 0, pos / jnp.maximum(cnt, 1.0), 0.0)
    beta = newton_logistic(Phi, ybar, cnt, ridge, iters)
    return (Phi @ beta).astype(F64) / env.sharpness


def newton_logistic(X, y, weight, ridge, iters: int):
    """MAP logistic regression by Newton steps with a dense solve (the model of ``learners.fit_logistic``).

    ``learners.fit_logistic`` factorises with ``cho_factor``/``cho_solve``, which XLA:CPU runs ~100x
    slower than ``jnp.linalg.solve`` at the ~260 coefficients used here (per-context effects), so this
    variant solves directly. Same loss: sum_i w_i [softplus(eta_i) - y_i eta_i] + ridge |beta|^2 / 2.
    """
    p = X.shape[-1]
    eye = jnp.eye(p, dtype=X.dtype)

    def step(beta, _):
        m = jax.nn.sigmoid(X @ beta)
        g = X.T @ (weight * (m - y)) + ridge * beta
        H = (X * (weight * m * (1.0 - m))[:, None]).T @ X + ridge * eye
        return beta - jnp.linalg.solve(H, g), None

    beta, _ = jax.lax.scan(step, jnp.zeros((p,), X.dtype), None, length=iters)
    return beta


def proxy_rewards(s_hat):
    """r_hat(x, a_0), r_hat(x, a_1) = (1 - s_hat)/2, (1 + s_hat)/2 (centred like U), stacked on the last axis."""
    return jnp.stack([0.5 * (1.0 - s_hat), 0.5 * (1.0 + s_hat)], axis=-1)


def true_rewards(env: DirectionalEnv):
    """U(x, a_0), U(x, a_1) stacked on the last axis, (K, 2)."""
    return jnp.stack([env.u0, env.u1], axis=-1)


def flagger(key, env: DirectionalEnv, tau, phi):
    """A synthetic x-only flagger with exact rates: flag a hard context w.p. tau, an easy one w.p. phi.

    Flags are drawn once per context (the flagger is a function of x). Returns (K,) in {0, 1}
    and the realised (tau, phi) on the finite context set.
    """
    u = jax.random.uniform(key, env.hard.shape, F64)
    f = jnp.where(env.hard > 0, u < tau, u < phi).astype(F64)
    return f, _rates(env, f)


def learned_flagger(key, env: DirectionalEnv, audit_size: int, keep_rate: float, *, ridge: float = 1.0):
    """A flagger learned from an audit set (Section 5.1): logistic regression of H on phi(x), thresholded
    so that a fraction ``keep_rate`` of contexts is flagged (B.7). Returns (flags (K,), (tau, phi))."""
    V.interval("keep_rate", keep_rate, 0.0, 1.0)
    k = jax.random.categorical(key, jnp.log(env.mu), shape=(audit_size,))
    Phi = learners.features(env.x.astype(F32))
    beta = newton_logistic(Phi[k], env.hard[k].astype(F32), jnp.ones((audit_size,), F32), ridge, 12)
    score = (Phi @ beta).astype(F64)
    t = jnp.quantile(score, 1.0 - keep_rate)
    f = (score >= t).astype(F64)
    return f, _rates(env, f)


def _rates(env, f):
    h = env.hard
    return jnp.sum(env.mu * h * f) / jnp.sum(env.mu * h), jnp.sum(env.mu * (1 - h) * f) / jnp.sum(env.mu * (1 - h))


def as_numpy(env: DirectionalEnv) -> dict:
    """The environment as a dict of NumPy arrays (for saving next to a report)."""
    return {k: np.asarray(v) for k, v in env._asdict().items()}
