"""Offline methods on preference pairs: DPO / IPO / f-DPO, the Bradley-Terry reward model, and SFT.

One jitted step per method, shared by every run: the model structure and the optimiser config are
static, beta is traced (a beta sweep compiles once). Pair batches hold the chosen rows first and
the rejected rows next, so the policy scores both in **one** forward of shape (2B, S) (as TRL's
``concatenated_forward``). Reference log-probs come either precomputed in the batch
(``ref_logps``, computed once per dataset with ``core.sequence_logps``) or from a reference forward
inside the step under ``stop_gradient`` (pass ``ref_params``; TRL's default).

    state = new_state(params, opt)
    state, m = preference_step(state, batch, beta, graphdef=g, opt=opt, loss=PreferenceLoss("dpo"))
    # m: loss, rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies, logps/*, grad_norm

SFT reuses ``murphyjax.train.make_train_step`` (token-mean masked NLL, gradient accumulation).
"""

from __future__ import annotations

import dataclasses
import functools
import threading

import jax
import jax.numpy as jnp
import numpy as np
import optax

from murphyjax import losses
from murphyjax.align import core
from murphyjax.align.codec import Seqs
from murphyjax.train import OptimizerConfig, TrainState, make_optimizer, make_train_step

LOSSES = ("dpo", "ipo", "fdpo")


@dataclasses.dataclass(frozen=True)
class PreferenceLoss:
    """Which direct-alignment loss: ``dpo`` (sigmoid), ``ipo`` (beta is IPO's tau) or ``fdpo``."""

    kind: str = "dpo"
    divergence: str = "js"  # f-DPO only (losses.F_DIVERGENCES)
    label_smoothing: float = 0.0  # DPO only (cDPO)

    def __post_init__(self):
        if self.kind not in LOSSES:
            raise ValueError(f"kind must be one of {LOSSES}; got {self.kind!r}")
        if self.divergence not in losses.F_DIVERGENCES:
            raise ValueError(f"divergence must be one of {losses.F_DIVERGENCES}; got {self.divergence!r}")


def new_state(params, opt: OptimizerConfig, seed: int = 0) -> TrainState:
    """A fresh TrainState (step 0, optimiser initialised) around a copy of ``params``."""
    params = core.copy_tree(params)
    return TrainState(jnp.zeros((), jnp.int32), params, make_optimizer(opt).init(params),
                      jax.random.key_data(jax.random.key(seed)))


def apply_gradients(state: TrainState, grads, opt: OptimizerConfig):
    tx = make_optimizer(opt)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return TrainState(state.step + 1, optax.apply_updates(state.params, updates), opt_state, state.rng)


def pair_loss(params, batch, beta, ref_params, *, graphdef, loss: PreferenceLoss, kind=None,
              prompt_len: int | None = None):
    """(loss, metrics) of one pair batch: policy log-probs of chosen and rejected in one forward.

    ``kind``: optional traced index into ``LOSSES`` overriding ``loss.kind`` (one compiled program for
    every loss, selected with ``lax.switch``). ``prompt_len``: see ``core.completion_sums``.
    """
    args = (batch["ids"], batch["mask"], batch["cmask"], prompt_len)
    with jax.named_scope("policy_forward"):
        lp = core.completion_sums(graphdef, params, *args, batch.get("features"))
    if ref_params is None:
        ref = batch["ref_logps"]
    else:
        with jax.named_scope("reference_forward"):
            ref = jax.lax.stop_gradient(core.completion_sums(graphdef, jax.lax.stop_gradient(ref_params), *args))
    B = lp.shape[0] // 2
    args = (lp[:B], lp[B:], ref[:B], ref[B:])
    branches = (lambda a: losses.dpo_loss(*a, beta, label_smoothing=loss.label_smoothing, margin=batch.get("margin", 0.0)),
                lambda a: losses.ipo_loss(*a, beta),
                lambda a: losses.fdpo_loss(*a, beta, loss.divergence))
    if kind is None:
        return branches[LOSSES.index(loss.kind)](args)
    return jax.lax.switch(kind, branches, args)


def preference_step(state: TrainState, batch: dict, beta, ref_params=None, *, graphdef,
                    opt: OptimizerConfig, loss: PreferenceLoss, prompt_len: int | None = None):
    """One optimiser update of a direct-alignment loss; returns (state, metrics). Jitted; the loss kind
    is passed traced, so DPO, IPO and f-DPO runs share one compiled program. ``prompt_len``: the
    completion occupies slots [prompt_len, S) of every row (logits formed only there)."""
    return _preference_step(state, batch, beta, np.int32(LOSSES.index(loss.kind)), ref_params, graphdef=graphdef,
                            opt=opt, loss=dataclasses.replace(loss, kind="dpo"), prompt_len=prompt_len)


@functools.partial(jax.jit, static_argnames=("graphdef", "opt", "loss", "prompt_len"), donate_argnums=0)
def _preference_step(state, batch, beta, kind, ref_params, *, graphdef, opt, loss, prompt_len):
    (value, metrics), grads = jax.value_and_grad(pair_loss, has_aux=True)(
        state.params, batch, beta, ref_params, graphdef=graphdef, loss=loss, kind=kind, prompt_len=prompt_len)
    return apply_gradients(state, grads, opt), {"loss": value, "grad_norm": optax.tree.norm(grads), **metrics}


def reward_loss(params, batch, *, graphdef):
    """Bradley-Terry loss -log sigmoid(r(x, y_c) - r(x, y_r)) of a pair batch (one forward, 2B rows)."""
    r = core.scalar_scores(graphdef, params, batch["ids"], batch["mask"], batch.get("features"))
    B = r.shape[0] // 2
    return losses.bradley_terry_loss(r[:B], r[B:])


@functools.partial(jax.jit, static_argnames=("graphdef", "opt"), donate_argnums=0)
def reward_step(state: TrainState, batch: dict, *, graphdef, opt: OptimizerConfig):
    """One optimiser update of the reward model ``{"lm", "head"}``; returns (state, metrics)."""
    (value, metrics), grads = jax.value_and_grad(reward_loss, has_aux=True)(state.params, batch, graphdef=graphdef)
    return apply_gradients(state, grads, opt), {"loss": value, "grad_norm": optax.tree.norm(grads), **metrics}


_SFT_STEPS: dict = {}
_SFT_LOCK = threading.Lock()


def sft_step(graphdef, opt: OptimizerConfig):
    """``murphyjax.train``'s jitted SFT step for (graphdef, opt), built once (thread-safe) and reused."""
    with _SFT_LOCK:
        if (graphdef, opt) not in _SFT_STEPS:
            _SFT_STEPS[(graphdef, opt)] = make_train_step(graphdef, make_optimizer(opt))
        return _SFT_STEPS[(graphdef, opt)]


# --------------------------------------------------------------------------- data
def pair_arrays(chosen: Seqs, rejected: Seqs, **extra) -> dict[str, np.ndarray]:
    """Per-pair arrays (n, ...) for ``train.batch_at``; ``pair_batch`` stacks them to (2B, ...)."""
    out = {"c_ids": chosen.ids, "c_mask": chosen.mask, "c_cmask": chosen.cmask,
           "r_ids": rejected.ids, "r_mask": rejected.mask, "r_cmask": rejected.cmask}
    out.update({k: np.asarray(v) for k, v in extra.items()})
    return out


def pair_batch(b: dict) -> dict:
    """Rows [chosen; rejected] (2B, S) from a ``batch_at`` draw of ``pair_arrays`` (leading axis 1)."""
    b = {k: v[0] for k, v in b.items()}
    out = {k: np.concatenate([b["c_" + k], b["r_" + k]]) for k in ("ids", "mask", "cmask")}
    if "c_features" in b:
        out["features"] = np.concatenate([b["c_features"], b["r_features"]])
    if "ref_c" in b:
        out["ref_logps"] = np.concatenate([b["ref_c"], b["ref_r"]]).astype(np.float32)
    if "margin" in b:
        out["margin"] = b["margin"].astype(np.float32)
    return out


def sft_batch(b: dict) -> dict:
    """``train.train_step`` batch (1, B, S) from a ``batch_at`` draw of {ids, mask, cmask}."""
    return {"input_ids": b["ids"], "attention_mask": b["mask"], "loss_mask": b["cmask"]}


def reference_logps(graphdef, ref_params, seqs: Seqs, batch: int = 64) -> np.ndarray:
    """Summed reference log-probs of every sequence, computed once (no gradient) in fixed-size chunks."""
    fn = functools.partial(core.sequence_logps, graphdef, ref_params)
    return core.batched(fn, [seqs.ids, seqs.mask, seqs.cmask], batch)
