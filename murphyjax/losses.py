"""Alignment losses on arrays: DPO and relatives, reward models, RL policy losses, KL estimators.

Every function takes per-sequence (or per-token) arrays, never models, and returns
``(loss, metrics)`` with the metric names TRL users know (``rewards/chosen``, ...). Sequence
log-probabilities are sums of per-token completion log-probs with prompt and padding masked
(the convention of TRL, levanter, tunix). Losses are means over the batch unless a ``mask``
or ``weights`` says otherwise; the per-example values are in ``metrics`` where useful.

Sign conventions (related-theory.md 5.1-5.4, engineering-notes 8):
  h = (pi_c - ref_c) - (pi_r - ref_r)            (log-ratio margin, "chosen" minus "rejected")
  DPO (sigmoid):  -log sigmoid(beta h)            = log 2 at initialisation (h = 0)
  IPO:            (h - 1/(2 tau))^2               (Azar et al. 2023, eq. 17 of v2)
  cDPO:           (1-e) l(beta h) + e l(-beta h)  with l(z) = -log sigmoid(z) (label smoothing)
  robust DPO:     ((1-e) l(beta h) - e l(-beta h)) / (1 - 2e)   (Chowdhury et al. 2024)
  f-DPO:          -log sigmoid(beta f'(u_c) - beta f'(u_r)), u = pi/pi_ref (Wang et al. 2023)
KL estimators for samples y ~ pi with log r = log pi_ref(y) - log pi(y) (Schulman's k1/k2/k3):
  k1 = -log r (unbiased, can be negative), k2 = (log r)^2 / 2 (biased, low variance),
  k3 = r - 1 - log r (unbiased, >= 0). All estimate KL(pi || pi_ref).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

KL_ESTIMATORS = ("k1", "k2", "k3")
F_DIVERGENCES = ("reverse_kl", "forward_kl", "js", "alpha")


def _f32(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _mean(x, weights=None):
    if weights is None:
        return jnp.mean(x)
    w = jnp.asarray(weights, x.dtype)
    return jnp.sum(w * x) / jnp.maximum(jnp.sum(w), 1e-12)


def _check_positive(name: str, v) -> None:
    try:
        ok = float(v) > 0
    except (TypeError, jax.errors.ConcretizationTypeError):
        return  # traced: validated by the caller's config
    if not ok:
        raise ValueError(f"{name} must be > 0; got {v!r}")


def _preference_metrics(chosen_rewards, rejected_rewards, pc, pr, weights=None):
    return {
        "rewards/chosen": _mean(chosen_rewards, weights),
        "rewards/rejected": _mean(rejected_rewards, weights),
        "rewards/margins": _mean(chosen_rewards - rejected_rewards, weights),
        "rewards/accuracies": _mean((chosen_rewards > rejected_rewards).astype(chosen_rewards.dtype), weights),
        "logps/chosen": _mean(pc, weights),
        "logps/rejected": _mean(pr, weights),
    }


# --------------------------------------------------------------------------- DPO family
def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta,
             *, label_smoothing: float = 0.0, robust: bool = False, weights=None, margin=0.0):
    """DPO (Rafailov et al. 2023), sigmoid loss: -log sigmoid(beta h), h the log-ratio margin.

    Args:
      policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps:
        per-pair sequence log-probs (B,), reference ones without gradient.
      beta: KL coefficient (> 0); the implicit reward is beta log(pi/pi_ref).
      label_smoothing: e in [0, 1/2): conservative DPO (cDPO) mixes in the flipped label;
        with ``robust=True`` the unbiased loss of Chowdhury et al. (2024) instead.
      weights: optional per-pair weights (e.g. a padding mask of pairs).
      margin: per-pair target margin m (B,) or scalar: the loss uses z - m with z = beta h (ODPO-style
        offset). A shaped reward r - c g(y) (MAPS penalty, paper App. D.1) gives m = c (g_r - g_c),
        so the optimum is pi_ref exp((r - c g)/beta) / Z. Default 0: plain DPO.
    Returns:
      (loss, metrics) with ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``,
      ``rewards/accuracies``, ``logps/chosen``, ``logps/rejected``. At initialisation
      (policy == reference) the loss is log 2 and every reward is 0 (with margin 0).
    """
    _check_positive("beta", beta)
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must lie in [0, 0.5); got {label_smoothing!r}")
    pc, pr, rc, rr = map(_f32, (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps))
    chosen = beta * (pc - rc)
    rejected = beta * (pr - rr)
    z = chosen - rejected - _f32(margin)
    # -log sigmoid(z) = softplus(-z): stable for large |z|
    if robust:
        per = ((1 - label_smoothing) * jax.nn.softplus(-z) - label_smoothing * jax.nn.softplus(z)) / (1 - 2 * label_smoothing)
    else:
        per = (1 - label_smoothing) * jax.nn.softplus(-z) + label_smoothing * jax.nn.softplus(z)
    with jax.named_scope("dpo_loss"):
        loss = _mean(per, weights)
    return loss, _preference_metrics(jax.lax.stop_gradient(chosen), jax.lax.stop_gradient(rejected), pc, pr, weights)


def ipo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, tau, *, weights=None):
    """IPO (Azar et al. 2023): (h - 1/(2 tau))^2; implicit rewards reported as tau log(pi/pi_ref).

    At initialisation the loss is 1/(4 tau^2).
    """
    _check_positive("tau", tau)
    pc, pr, rc, rr = map(_f32, (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps))
    h = (pc - rc) - (pr - rr)
    loss = _mean((h - 1.0 / (2.0 * tau)) ** 2, weights)
    return loss, _preference_metrics(jax.lax.stop_gradient(tau * (pc - rc)), jax.lax.stop_gradient(tau * (pr - rr)), pc, pr, weights)


def f_prime(log_ratio, divergence: str, alpha: float = 0.5):
    """f'(u) at u = exp(log_ratio) for the f-divergences of f-DPO (related-theory.md 5.2).

    reverse_kl: log u + 1;  forward_kl: -1/u;  js: log(2u/(1+u));  alpha: (1 - u^-alpha)/alpha.
    """
    lr = _f32(log_ratio)
    if divergence == "reverse_kl":
        return lr + 1.0
    if divergence == "forward_kl":
        return -jnp.exp(-lr)
    if divergence == "js":
        return jnp.log(2.0) + lr - jax.nn.softplus(lr)
    if divergence == "alpha":
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1) for the alpha-divergence; got {alpha!r}")
        return -jnp.expm1(-alpha * lr) / alpha
    raise ValueError(f"divergence must be one of {', '.join(F_DIVERGENCES)}; got {divergence!r}")


def fdpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta,
              divergence: str = "js", *, alpha: float = 0.5, weights=None):
    """f-DPO (Wang et al. 2023): -log sigmoid(beta f'(u_c) - beta f'(u_r)), u = pi/pi_ref.

    ``divergence="reverse_kl"`` is exactly DPO. At initialisation (u = 1) the loss is log 2.
    Rewards are reported as beta f'(u) (the implicit reward up to a per-prompt constant).
    """
    _check_positive("beta", beta)
    pc, pr, rc, rr = map(_f32, (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps))
    chosen = beta * f_prime(pc - rc, divergence, alpha)
    rejected = beta * f_prime(pr - rr, divergence, alpha)
    loss = _mean(jax.nn.softplus(-(chosen - rejected)), weights)
    return loss, _preference_metrics(jax.lax.stop_gradient(chosen), jax.lax.stop_gradient(rejected), pc, pr, weights)


# --------------------------------------------------------------------------- reward model
def bradley_terry_loss(chosen_rewards, rejected_rewards, *, weights=None):
    """Bradley-Terry reward-model loss -log sigmoid(r_c - r_r) (log 2 when r_c = r_r).

    Returns (loss, metrics) with ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``,
    ``rewards/accuracies``.
    """
    c, r = _f32(chosen_rewards), _f32(rejected_rewards)
    loss = _mean(jax.nn.softplus(-(c - r)), weights)
    m = _preference_metrics(jax.lax.stop_gradient(c), jax.lax.stop_gradient(r), c, r, weights)
    return loss, {k: v for k, v in m.items() if k.startswith("rewards/")}


# --------------------------------------------------------------------------- KL
def kl_per_token(policy_logps, ref_logps, estimator: str = "k3"):
    """Per-token estimate of KL(pi || pi_ref) from samples of pi (k1, k2 or k3; module docstring)."""
    lr = _f32(ref_logps) - _f32(policy_logps)  # log r, r = pi_ref / pi
    if estimator == "k1":
        return -lr
    if estimator == "k2":
        return 0.5 * lr**2
    if estimator == "k3":
        return jnp.expm1(lr) - lr
    raise ValueError(f"estimator must be one of {', '.join(KL_ESTIMATORS)}; got {estimator!r}")


def exact_kl_per_token(policy_logits, ref_logits):
    """Exact KL(pi(.|prefix) || pi_ref(.|prefix)) over the vocabulary at every position.

    Args: logits (..., V) of policy and reference at the same prefixes. Returns (...,).
    """
    lp = jax.nn.log_softmax(_f32(policy_logits), axis=-1)
    lq = jax.nn.log_softmax(_f32(ref_logits), axis=-1)
    return jnp.sum(jnp.exp(lp) * (lp - lq), axis=-1)


def kl_penalized_rewards(rewards, policy_logps, ref_logps, mask, beta, estimator: str = "k1"):
    """PPO-style KL in the reward (TRL/tunix): per-token rewards -beta kl_t, plus the score at the last token.

    Args:
      rewards: (B,) sequence scores (e.g. the proxy reward model).
      policy_logps, ref_logps: (B, T) per-token log-probs of the sampled completion.
      mask: (B, T) 1 on completion tokens.
      beta: KL coefficient >= 0.
    Returns: (token_rewards (B, T), metrics with ``kl`` (mean sequence KL estimate), also under
    ``kl_<estimator>`` so logs name the estimator that was trained on).
    """
    m = _f32(mask)
    kl = kl_per_token(policy_logps, ref_logps, estimator) * m
    last = (jnp.cumsum(m, axis=1) == jnp.sum(m, axis=1, keepdims=True)) & (m > 0)
    tok = -beta * kl + jnp.where(last, _f32(rewards)[:, None], 0.0)
    return tok, {"kl": jnp.mean(jnp.sum(kl, axis=1)), f"kl_{estimator}": jnp.mean(jnp.sum(kl, axis=1))}


# --------------------------------------------------------------------------- RL policy losses
def group_advantages(rewards, group_size: int, *, normalize_std: bool = True, eps: float = 1e-6):
    """GRPO advantages: (r - mean_group) / (std_group + eps) over consecutive groups of size G."""
    r = _f32(rewards)
    if r.shape[0] % group_size:
        raise ValueError(f"group_size must divide the batch ({r.shape[0]}); got {group_size}")
    g = r.reshape(-1, group_size)
    a = g - g.mean(axis=1, keepdims=True)
    if normalize_std:
        a = a / (g.std(axis=1, keepdims=True) + eps)
    return a.reshape(r.shape)


def clipped_policy_loss(logps, old_logps, advantages, mask, clip_eps: float = 0.2):
    """PPO clipped surrogate, per token: -min(rho A, clip(rho, 1-e, 1+e) A), rho = exp(logp - old).

    Args: logps, old_logps (B, T); advantages (B, T) or (B,) (broadcast over tokens); mask (B, T).
    Token-level mean over the mask. Returns (loss, metrics: ``clip_fraction``, ``approx_kl``
    (k3 of old vs new), ``ratio``).
    """
    if not clip_eps > 0:
        raise ValueError(f"clip_eps must be > 0; got {clip_eps!r}")
    m = _f32(mask)
    a = _f32(advantages)
    if a.ndim == 1:
        a = a[:, None]
    lr = _f32(logps) - _f32(old_logps)
    rho = jnp.exp(lr)
    unclipped = rho * a
    clipped = jnp.clip(rho, 1 - clip_eps, 1 + clip_eps) * a
    per = -jnp.minimum(unclipped, clipped)
    n = jnp.maximum(m.sum(), 1.0)
    loss = jnp.sum(per * m) / n
    metrics = {
        "clip_fraction": jnp.sum((jnp.abs(rho - 1) > clip_eps) * m) / n,
        "approx_kl": jnp.sum((jnp.expm1(-lr) + lr) * m) / n,
        "ratio": jnp.sum(rho * m) / n,
    }
    return loss, metrics


def grpo_loss(logps, old_logps, ref_logps, advantages, mask, *, beta: float = 0.04, clip_eps: float = 0.2,
              estimator: str = "k3"):
    """Group-relative policy loss with the KL *in the loss* (tunix GRPO; TRL's default beta is 0).

    loss = clipped_policy_loss + beta * mean_tokens(kl_t(pi || pi_ref)). Returns (loss, metrics)
    with ``kl`` (also under ``kl_<estimator>``, naming the estimator used).
    """
    pl, met = clipped_policy_loss(logps, old_logps, advantages, mask, clip_eps)
    m = _f32(mask)
    kl = jnp.sum(kl_per_token(logps, ref_logps, estimator) * m) / jnp.maximum(m.sum(), 1.0)
    met = dict(met, kl=kl, policy_loss=pl, **{f"kl_{estimator}": kl})
    return pl + beta * kl, met


def value_loss(values, returns, mask, old_values=None, clip_eps: float | None = None):
    """Critic loss 0.5 (V - R)^2 (optionally clipped around old values, as in PPO)."""
    m = _f32(mask)
    v, r = _f32(values), _f32(returns)
    per = (v - r) ** 2
    if old_values is not None and clip_eps is not None:
        vc = _f32(old_values) + jnp.clip(v - _f32(old_values), -clip_eps, clip_eps)
        per = jnp.maximum(per, (vc - r) ** 2)
    return 0.5 * jnp.sum(per * m) / jnp.maximum(m.sum(), 1.0), {}


def gae(token_rewards, values, mask, gamma: float = 1.0, lam: float = 0.95):
    """Generalised advantage estimation over (B, T) with a mask of valid tokens (right-padded).

    delta_t = r_t + gamma V_{t+1} - V_t (V past the last valid token is 0); A_t = sum_k
    (gamma lam)^k delta_{t+k}. Returns (advantages, returns = advantages + values).
    """
    m = _f32(mask)
    r, v = _f32(token_rewards) * m, _f32(values) * m
    v_next = jnp.concatenate([v[:, 1:], jnp.zeros_like(v[:, :1])], axis=1) * jnp.concatenate([m[:, 1:], jnp.zeros_like(m[:, :1])], axis=1)
    delta = (r + gamma * v_next - v) * m

    def step(carry, x):
        d, mm = x
        a = d + gamma * lam * carry * mm
        return a, a

    _, adv = jax.lax.scan(step, jnp.zeros(r.shape[0], r.dtype), (delta.T[::-1], m.T[::-1]))
    adv = adv[::-1].T * m
    return adv, adv + v


# --------------------------------------------------------------------------- SFT
def masked_nll(token_logps, mask):
    """Supervised loss: -sum(mask * log p) / sum(mask) (token mean over the whole batch).

    Under gradient accumulation, sum the numerators and the token counts over micro-batches
    before dividing, so the update equals the large batch's.
    """
    m = _f32(mask)
    n = jnp.maximum(m.sum(), 1.0)
    return -jnp.sum(_f32(token_logps) * m) / n, {"tokens": m.sum()}
