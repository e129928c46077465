"""RLHF on LLM policies: PPO with the KL in the reward, and a group-relative variant with the KL in the loss.

Where the KL to the reference goes is explicit (engineering notes 8):

* ``algo="ppo"`` (TRL, tunix PPO): per-token reward -c kl_t plus the proxy score at the last token
  (``losses.kl_penalized_rewards``), advantages by GAE from a value head on the policy's backbone,
  clipped surrogate + clipped value loss. The KL estimator in the reward defaults to k1.
* ``algo="grpo"`` (tunix GRPO): G samples per prompt, advantages (r - mean_group) / std_group, clipped
  surrogate + c * mean_tokens(kl_t) in the loss, estimator k3 by default.

Every iteration logs the estimator that was optimised (``kl_<estimator>``) next to the exact KL
(``exact_kl``: per-token KL over the whole vocabulary summed along the sampled sequences), so a
negative or biased estimate is visible. The KL coefficient c is traced: one compilation per sweep.

    state = rl_state(policy_params, cfg, opt)
    state, metrics = rl_iteration(state, ref_params, prompt_ids, prompt_mask, reward_fn, key, c, cfg=cfg, ...)
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from murphyjax import losses
from murphyjax.align import core
from murphyjax.align.preference import apply_gradients, new_state
from murphyjax.llm import SamplingConfig
from murphyjax.llm.sampling import token_logprobs
from murphyjax.train import OptimizerConfig

ALGOS = ("ppo", "grpo")


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """An RL fine-tuning configuration (static: part of the compiled programs' keys)."""

    algo: str = "ppo"
    kl_estimator: str = ""  # "" = the algorithm's default: k1 (ppo, in the reward), k3 (grpo, in the loss)
    group_size: int = 4  # grpo: samples per prompt
    epochs: int = 2  # optimisation passes over each rollout batch
    minibatches: int = 2
    clip_eps: float = 0.2
    vf_coef: float = 0.1  # ppo: value-loss weight (the value head shares the policy backbone)
    value_clip: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    temperature: float = 1.0  # rollout temperature

    def __post_init__(self):
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {ALGOS}; got {self.algo!r}")
        if self.kl_estimator not in ("",) + losses.KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {losses.KL_ESTIMATORS} (or '' for the default); "
                             f"got {self.kl_estimator!r}")
        for k in ("group_size", "epochs", "minibatches"):
            if not (isinstance(getattr(self, k), int) and getattr(self, k) >= 1):
                raise ValueError(f"{k} must be an integer >= 1; got {getattr(self, k)!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0; got {self.temperature!r}")

    @property
    def estimator(self) -> str:
        return self.kl_estimator or ("k1" if self.algo == "ppo" else "k3")


def rl_state(policy_params, cfg: RLConfig, opt: OptimizerConfig, d_model: int, seed: int = 0):
    """TrainState over ``{"lm": policy, "value": head}`` (ppo) or ``{"lm": policy}`` (grpo)."""
    params = {"lm": policy_params}
    if cfg.algo == "ppo":
        params["value"] = core.init_head(d_model)
    return new_state(params, opt, seed)


def _logits(graphdef, lm_params, ids, mask, prompt_len, features):
    """Final hidden states (B, S, D), the model, and the logits (B * (S - start), V) at the positions
    start - 1 .. S - 2 that predict tokens start .. S - 1 (start = prompt_len, or 1): the completion
    lies in slots [prompt_len, S) (the rollout layout), so no prompt position's logits are formed."""
    h, model = core.hidden(graphdef, lm_params, ids, mask, features)
    start = 1 if prompt_len is None else prompt_len
    hc = h[:, start - 1:-1]
    return h, model, model.logits(hc.reshape(-1, hc.shape[-1]))


def _forward(graphdef, params, ids, mask, cmask, prompt_len=None, features=None):
    """Completion log-probs (B, S), values (B, S) (value of the state before token t) and the logits that
    predict completion tokens (``_logits``). ``features``: the frozen trunk's activations of these rows
    (``core.trunk_features``): only the trained top layers run."""
    h, model, logits = _logits(graphdef, params["lm"], ids, mask, prompt_len, features)
    start = 1 if prompt_len is None else prompt_len
    b = ids.shape[0]
    lp = token_logprobs(logits, ids[:, start:].reshape(-1)).reshape(b, -1)
    lp = jnp.where(cmask, jnp.concatenate([jnp.zeros((b, start), lp.dtype), lp], 1), 0.0)
    values = None
    if "value" in params:
        v = h[:, :-1].astype(jnp.float32) @ params["value"]["w"] + params["value"]["b"]
        values = jnp.where(cmask, jnp.concatenate([jnp.zeros_like(v[:, :1]), v], 1), 0.0)
    return lp, values, logits


def _whiten(x, m):
    n = jnp.maximum(m.sum(), 1.0)
    mu = jnp.sum(x * m) / n
    sd = jnp.sqrt(jnp.sum(((x - mu) * m) ** 2) / n)
    return jnp.where(m > 0, (x - mu) / (sd + 1e-8), 0.0)


@functools.partial(jax.jit, static_argnames=("graphdef", "cfg", "prompt_len"))
def prepare(params, ref_params, ids, mask, cmask, scores, kl_coef, *, graphdef, cfg: RLConfig, prompt_len=None,
            features=None):
    """Old log-probs, reference log-probs, values, advantages and returns of a rollout batch, + metrics.
    ``features``: the trunk's activations, shared by the policy and the reference (``core.shared_trunk``)."""
    lp, values, logits = _forward(graphdef, params, ids, mask, cmask, prompt_len, features)
    start = 1 if prompt_len is None else prompt_len
    b = ids.shape[0]
    _, _, ref_logits = _logits(graphdef, ref_params, ids, mask, prompt_len, features)
    ref_lp = token_logprobs(ref_logits, ids[:, start:].reshape(-1)).reshape(b, -1)
    ref_lp = jnp.where(cmask, jnp.concatenate([jnp.zeros((b, start), ref_lp.dtype), ref_lp], 1), 0.0)
    m = cmask.astype(jnp.float32)
    exact = jnp.sum(losses.exact_kl_per_token(logits, ref_logits).reshape(b, -1) * m[:, start:], 1)
    est = jnp.sum(losses.kl_per_token(lp, ref_lp, cfg.estimator) * m, 1)
    out = {"old_logps": lp, "ref_logps": ref_lp}
    if cfg.algo == "ppo":
        tok_r, _ = losses.kl_penalized_rewards(scores, lp, ref_lp, m, kl_coef, cfg.estimator)
        adv, returns = losses.gae(tok_r, values, m, cfg.gamma, cfg.lam)
        out.update(old_values=values, returns=returns,
                   adv=_whiten(adv, m) if cfg.whiten_advantages else adv)
    else:
        out["adv"] = losses.group_advantages(scores, cfg.group_size)
    metrics = {"score": scores.mean(), f"kl_{cfg.estimator}": est.mean(), "exact_kl": exact.mean(),
               "length": m.sum(1).mean(), "kl_coef": kl_coef}
    return out, metrics


def rl_loss(params, mb, kl_coef, *, graphdef, cfg: RLConfig, prompt_len=None):
    lp, values, _ = _forward(graphdef, params, mb["ids"], mb["mask"], mb["cmask"], prompt_len, mb.get("features"))
    m = mb["cmask"].astype(jnp.float32)
    if cfg.algo == "grpo":
        return losses.grpo_loss(lp, mb["old_logps"], mb["ref_logps"], mb["adv"], m, beta=kl_coef,
                                clip_eps=cfg.clip_eps, estimator=cfg.estimator)
    pl, met = losses.clipped_policy_loss(lp, mb["old_logps"], mb["adv"], m, cfg.clip_eps)
    vl, _ = losses.value_loss(values, mb["returns"], m, old_values=mb["old_values"], clip_eps=cfg.value_clip)
    return pl + cfg.vf_coef * vl, dict(met, policy_loss=pl, value_loss=vl)


@functools.partial(jax.jit, static_argnames=("graphdef", "cfg", "opt", "prompt_len"), donate_argnums=0)
def update(state, mb, kl_coef, *, graphdef, cfg: RLConfig, opt: OptimizerConfig, prompt_len=None):
    """One optimiser step on a minibatch of a prepared rollout batch."""
    (value, met), grads = jax.value_and_grad(rl_loss, has_aux=True)(state.params, mb, kl_coef, graphdef=graphdef, cfg=cfg,
                                                                    prompt_len=prompt_len)
    return apply_gradients(state, grads, opt), {"loss": value, "grad_norm": optax.tree.norm(grads), **met}


def rl_iteration(state, ref_params, prompt_ids, prompt_mask, reward_fn, key, kl_coef, *, graphdef,
                 cfg: RLConfig, opt: OptimizerConfig, max_new_tokens: int, stop_ids, pad_id: int):
    """Rollout, score, prepare, then ``epochs x minibatches`` updates. Returns (state, metrics, samples).

    Args:
      prompt_ids, prompt_mask: (M, P) prompts; for grpo each is sampled ``group_size`` times
        (rows repeated consecutively, the layout ``losses.group_advantages`` expects).
      reward_fn: ``(samples, index) -> (B,) numpy scores``, ``index`` the prompt row of each sample
        (the proxy reward, possibly shaped, e.g. a MAPS penalty).
    """
    k_roll, k_perm = jax.random.split(key)
    index = np.arange(len(prompt_ids))
    if cfg.algo == "grpo":
        index = np.repeat(index, cfg.group_size)
    scfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=cfg.temperature,
                          stop_tokens=tuple(stop_ids), pad_id=pad_id)
    samples = core.rollout(graphdef, state.params["lm"], prompt_ids[index], prompt_mask[index], k_roll, scfg)
    ids, mask, cmask = (np.asarray(x) for x in samples.sequences())
    scores = np.asarray(reward_fn(samples, index), np.float32)
    P = prompt_ids.shape[1]  # the rollout layout: completions in slots [P, P + max_new_tokens)
    # policy and reference that train only their upper layers share the trunk: its activations are
    # computed once per rollout batch and every forward below runs the upper layers alone
    shared = core.shared_trunk(graphdef, state.params["lm"], ref_params)
    feats = core.trunk_features(graphdef, ref_params, ids, mask) if shared else None
    batch, metrics = prepare(state.params, ref_params, ids, mask, cmask, scores, kl_coef, graphdef=graphdef, cfg=cfg,
                             prompt_len=P, features=feats)
    batch = {**batch, "ids": ids, "mask": mask, "cmask": cmask, **({"features": feats} if shared else {})}
    B = len(ids)
    mb = B // cfg.minibatches
    perms = np.asarray(jax.random.permutation(k_perm, np.tile(np.arange(B), (cfg.epochs, 1)), axis=1,
                                              independent=True))
    upd = []
    for e in range(cfg.epochs):
        for j in range(cfg.minibatches):
            rows = perms[e, j * mb:(j + 1) * mb]
            state, um = update(state, jax.tree.map(lambda x: x[rows], batch), kl_coef, graphdef=graphdef, cfg=cfg, opt=opt,
                               prompt_len=P)
            upd.append(um)
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    metrics.update({k: float(np.mean([u[k] for u in jax.device_get(upd)])) for k in upd[0]})
    metrics["kl_estimator"] = cfg.estimator
    return state, metrics, samples
