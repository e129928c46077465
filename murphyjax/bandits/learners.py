"""Learners of the bandit laboratory (arXiv:2509.05381 v3, Sections 3.2, 5.1, 5.6).

* ``fit_logistic`` -- the logistic preference model: MAP estimate of beta in
  P(label favours a_1 | x) = sigmoid(beta^T phi(x)) with a N(0, I / ridge) prior, by a fixed
  number of Newton steps (jit- and vmap-friendly, warm-startable). phi(x) = [x, 1] by default
  (``features``); the proxy is s_hat(x) = beta^T phi(x) = r_hat(x, a_1) - r_hat(x, a_0).
* ``policy`` -- pi_lambda(a_1 | x) = sigmoid(lambda s_hat(x)) (Section 3.2).
* Flaggers from a small audit set (Section 5.1): residual-based (regress "the proxy's preferred
  action disagrees with the adjudicated best action" on x) and disagreement-based (two preference
  models on disjoint coordinate views, score |s_A(x) - s_B(x)|); any score becomes a flagger by
  thresholding it at a keep rate (B.7, ``keep_threshold``).
* ``estimate_from_audit`` -- alpha, eps, gamma from adjudicated audit data (Section 5.6).

Arrays are float32; losses take arrays, not models.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

F32 = jnp.float32


def features(x):
    """phi(x) = [x, 1]: linear-logistic in x with an intercept (the paper's default, Section 3.2)."""
    return jnp.concatenate([x, jnp.ones(x.shape[:-1] + (1,), x.dtype)], axis=-1)


def logistic_loss(beta, X, y, weight, ridge):
    """Penalised negative log-likelihood sum_i w_i [softplus(eta_i) - y_i eta_i] + ridge |beta|^2 / 2.

    softplus(eta) - y eta = -log sigmoid(eta) for y = 1 and -log sigmoid(-eta) for y = 0 (stable form).
    Returns (loss, metrics) levanter-style.
    """
    eta = X @ beta
    nll = jnp.sum(weight * (jax.nn.softplus(eta) - y * eta))
    loss = nll + 0.5 * ridge * beta @ beta
    n = jnp.maximum(jnp.sum(weight), 1.0)
    return loss, {"nll_per_label": nll / n, "labels": jnp.sum(weight)}


@functools.partial(jax.jit, static_argnames=("iters",))
def fit_logistic(X, y, weight, *, ridge=1.0, iters=8, beta0=None):
    """MAP logistic regression by ``iters`` Newton steps (float32, jit/vmap-friendly).

    Args:
      X: (n, p) features; y: (n,) labels in {0, 1}; weight: (n,) >= 0 (0 masks a row out).
      ridge: prior precision (> 0 keeps every step well posed, even for separable data).
      iters: Newton steps (static); beta0: warm start (zeros by default).
    Returns (beta, metrics) with the final loss and gradient norm.
    """
    p = X.shape[-1]
    beta = jnp.zeros((p,), F32) if beta0 is None else beta0
    eye = jnp.eye(p, dtype=F32)

    def step(beta, _):
        eta = X @ beta
        mu = jax.nn.sigmoid(eta)
        g = X.T @ (weight * (mu - y)) + ridge * beta
        h = (X * (weight * mu * (1.0 - mu))[:, None]).T @ X + ridge * eye
        beta = beta - spd_solve(h, g)
        return beta, None

    beta, _ = jax.lax.scan(step, beta, None, length=iters)
    loss, metrics = logistic_loss(beta, X, y, weight, ridge)
    grad = jax.grad(lambda b: logistic_loss(b, X, y, weight, ridge)[0])(beta)
    return beta, dict(metrics, loss=loss, grad_norm=jnp.linalg.norm(grad))


def spd_solve(A, b):
    """x = A^{-1} b for a symmetric positive definite (p, p) ``A`` by Gauss-Jordan elimination.

    No pivoting is needed for SPD matrices (every pivot is a Schur-complement diagonal, > 0). Pure
    XLA (one ``fori_loop`` of p rank-1 updates of [A | b]) on purpose: under ``vmap`` on several
    CPU devices, LAPACK's batched Cholesky (``cho_factor``) fans out into the intra-op thread pool
    it already runs on and can deadlock it (seen: ``murphyjax reproduce`` hung with both pool
    threads waiting inside ``lapack_spotrf``). The solve is O(p^3), negligible next to forming
    the Hessian (O(n p^2)).
    """
    p = A.shape[-1]
    M = jnp.concatenate([A, b[:, None]], axis=1)

    def step(j, M):
        row = M[j] / M[j, j]
        return (M - M[:, j][:, None] * row[None, :]).at[j].set(row)

    return jax.lax.fori_loop(0, p, step, M)[:, p]


def policy(s_hat, lam):
    """pi_lambda(a_1 | x) = sigmoid(lambda s_hat(x)) (Section 3.2); lam broadcasts against s_hat."""
    return jax.nn.sigmoid(lam * s_hat)


def margin_query(s_prev, x_scores_ref, frac):
    """Uncertainty (margin) sampling: ask when |s_prev(x)| is below the ``frac`` quantile of |s_prev|
    on reference contexts ``x_scores_ref`` (oracle-free and predictable: s_prev uses past labels only)."""
    c = jnp.quantile(jnp.abs(x_scores_ref), frac)
    return (jnp.abs(s_prev) <= c).astype(F32)


# --------------------------------------------------------------------------- flaggers (Section 5.1)
def keep_threshold(u_ref, keep_rate):
    """B.7: the threshold t with P(u(X) >= t) = keep_rate, estimated on reference contexts."""
    return jnp.quantile(u_ref, 1.0 - keep_rate)


@functools.partial(jax.jit, static_argnames=("iters",))
def residual_flagger(x_audit, proxy_pick_a1, best_is_a1, *, ridge=1.0, iters=10):
    """Residual-based flagger: regress 1{proxy's preferred action != adjudicated best} on phi(x).

    On easy contexts the proxy is mostly right; on hard ones it is right about half the time, so
    the fitted log-odds is a score u(x) that increases with P(hard | x). Returns beta (score = beta^T phi(x)).
    """
    resid = (proxy_pick_a1 != best_is_a1).astype(F32)
    X = features(x_audit)
    beta, _ = fit_logistic(X, resid, jnp.ones_like(resid), ridge=ridge, iters=iters)
    return beta


def view_masks(mask):
    """Split the active coordinates (mask == 1) into two disjoint halves (the "views" of Section 5.1)."""
    d = jnp.sum(mask)
    i = jnp.arange(mask.shape[0])
    a = (i < jnp.floor(d / 2)).astype(F32) * mask
    return a, mask - a


@functools.partial(jax.jit, static_argnames=("iters",))
def disagreement_models(x, y, weight, mask, *, ridge=1.0, iters=10):
    """Disagreement-based flagger: two preference models on disjoint views of x (Section 5.1).

    Returns (beta_A, beta_B); the score is |s_A(x) - s_B(x)| (``disagreement_score``).
    """
    ma, mb = view_masks(mask)
    ba, _ = fit_logistic(features(x * ma), y, weight, ridge=ridge, iters=iters)
    bb, _ = fit_logistic(features(x * mb), y, weight, ridge=ridge, iters=iters)
    return ba, bb


def disagreement_score(x, beta_a, beta_b, mask):
    ma, mb = view_masks(mask)
    return jnp.abs(features(x * ma) @ beta_a - features(x * mb) @ beta_b)


def flag_rates(flag, z):
    """Empirical (tau, phi) = (P(flag | hard), P(flag | easy)) from flags and hardness labels."""
    nh = jnp.maximum(jnp.sum(z), 1.0)
    ne = jnp.maximum(jnp.sum(1.0 - z), 1.0)
    return jnp.sum(flag * z) / nh, jnp.sum(flag * (1.0 - z)) / ne


# --------------------------------------------------------------------------- Section 5.6
def estimate_from_audit(z, label_agrees, margin):
    """Estimates of (alpha, eps, gamma) from an adjudicated audit set (Section 5.6).

    Args:
      z: (A,) audited hardness (1 = the crowd channel is biased at this context).
      label_agrees: (A,) 1 when the crowd label agrees with the adjudicated best action.
      margin: (A,) observed |r(x, pi^+) - r(x, pi^-)| (zero on easy contexts).
    Returns dict alpha, eps, gamma and their standard errors (binomial / delta method):
      alpha_hat = mean z; eps_hat = mean(agree | hard) - 1/2; gamma_hat = mean(margin * z).
    eps_hat is not clipped; clip it into (0, 1/2) before plugging it into kappa.
    """
    A = z.shape[0]
    nh = jnp.maximum(jnp.sum(z), 1.0)
    alpha = jnp.mean(z)
    acc = jnp.sum(label_agrees * z) / nh
    gamma = jnp.mean(margin * z)
    return {
        "alpha": alpha,
        "alpha_se": jnp.sqrt(alpha * (1 - alpha) / A),
        "eps": acc - 0.5,
        "eps_se": jnp.sqrt(acc * (1 - acc) / nh),
        "gamma": gamma,
        "gamma_se": jnp.std(margin * z) / jnp.sqrt(A),
        "hard_audited": jnp.sum(z),
    }
