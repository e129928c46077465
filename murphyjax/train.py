"""Supervised fine-tuning of LLM policies: masked next-token loss, optax configs, a pure jitted step.

    graphdef, state = init_train_state(model, make_optimizer(OptimizerConfig()), seed=0)
    step = make_train_step(graphdef, tx, mesh=mesh)        # jit, donated state, NamedShardings
    state, metrics = step(state, batch)                     # batch arrays (A, b, S): A micro-batches

Loss normalisation: the loss of a step is  sum of token NLLs / number of target tokens  over the whole
step, micro-batches included (not a mean of per-micro-batch means), so gradient accumulation over A
micro-batches of b sequences gives the update of one batch of A*b sequences, whatever the padding.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from murphyjax.llm.model import positions_from_mask
from murphyjax.llm.sampling import hidden_logprobs, token_logprobs


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """An optax optimiser: AdamW (default) or SGD, linear warmup then constant or cosine decay,
    global-norm clipping."""

    name: str = "adamw"
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    momentum: float = 0.0
    warmup_steps: int = 0
    decay_steps: int = 0  # > 0: cosine decay to 0 over this many steps after warmup
    grad_clip: float = 1.0  # 0: off

    def __post_init__(self):
        if self.name not in ("adamw", "sgd"):
            raise ValueError(f"name must be 'adamw' or 'sgd', got {self.name!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        for k in ("weight_decay", "grad_clip", "momentum", "warmup_steps", "decay_steps"):
            if getattr(self, k) < 0:
                raise ValueError(f"{k} must be >= 0, got {getattr(self, k)!r}")
        for k in ("b1", "b2"):
            if not 0 <= getattr(self, k) < 1:
                raise ValueError(f"{k} must be in [0, 1), got {getattr(self, k)!r}")


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """The optax chain of ``cfg``."""
    lr = cfg.learning_rate
    if cfg.decay_steps:
        lr = optax.warmup_cosine_decay_schedule(0.0, lr, cfg.warmup_steps, cfg.warmup_steps + cfg.decay_steps)
    elif cfg.warmup_steps:
        lr = optax.join_schedules([optax.linear_schedule(0.0, lr, cfg.warmup_steps), optax.constant_schedule(lr)],
                                  [cfg.warmup_steps])
    if cfg.name == "adamw":
        opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
    else:
        opt = optax.sgd(lr, momentum=cfg.momentum or None)
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt) if cfg.grad_clip else opt


class TrainState(NamedTuple):
    """Everything a step changes: step count, parameters, optimiser state, PRNG key data (uint32)."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array


def init_train_state(model: nnx.Module, tx: optax.GradientTransformation, seed: int = 0):
    """Split ``model`` into (graphdef, TrainState). Build the model under the target mesh, or ``shard`` after."""
    graphdef, params = nnx.split(model, nnx.Param)
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), jax.random.key_data(jax.random.key(seed)))
    return graphdef, state


def masked_nll(logits: jax.Array, input_ids: jax.Array, loss_mask: jax.Array):
    """Next-token negative log-likelihood summed over target tokens, and their count.

    sum_t -log p(x_{t+1} | x_{<=t}) * m_{t+1}, with m = ``loss_mask`` (1 on tokens to learn, e.g. the
    assistant turns; 0 on prompt and padding). Args: logits (B, S, V); input_ids, loss_mask (B, S).
    Returns: (nll_sum, n_tokens), float32 scalars.
    """
    return _nll_sums(token_logprobs(logits[:, :-1], input_ids[:, 1:]), loss_mask[:, 1:])


def _nll_sums(logprobs, target_mask):
    """(sum of -logprobs over the target tokens, their count) from per-token log-probs and a mask."""
    m = target_mask.astype(jnp.float32)
    return jnp.sum(-logprobs * m), jnp.sum(m)


def _loss_sums(params, graphdef, batch, scale):
    """(scale * nll_sum, nll_sum) of one micro-batch."""
    model = nnx.merge(graphdef, params)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with jax.named_scope("forward"):
        h, _ = model.hidden(ids, mask, positions_from_mask(mask))
        # the output projection only at the S - 1 positions that predict a token (no (B, S, V) logits
        # to slice), on 2-D rows (``hidden_logprobs``)
        lp = hidden_logprobs(model, h[:, :-1], ids[:, 1:])
    nll, _ = _nll_sums(lp, batch["loss_mask"][:, 1:])
    return scale * nll, nll


def train_step(state: TrainState, batch: dict, *, graphdef, tx: optax.GradientTransformation):
    """One optimiser update from a batch of A micro-batches; returns (state, metrics).

    grad = (sum over micro-batches of grad nll_sum) / (total target tokens): exactly the gradient of the
    token-mean loss of the full batch. The token count is known from the masks before any forward pass,
    so the 1 / count factor is applied inside the loss (no extra pass over the gradients).
    Arrays in ``batch``: input_ids, attention_mask, loss_mask (A, b, S).
    """
    n = jnp.sum(batch["loss_mask"][:, :, 1:].astype(jnp.float32))
    scale = 1.0 / jnp.maximum(n, 1.0)
    grad_fn = jax.value_and_grad(_loss_sums, has_aux=True)
    if batch["input_ids"].shape[0] == 1:
        (_, nll), grads = grad_fn(state.params, graphdef, jax.tree.map(lambda x: x[0], batch), scale)
    else:
        def micro(carry, mb):
            (_, nll), g = grad_fn(state.params, graphdef, mb, scale)
            return jax.tree.map(jnp.add, carry, (nll, g)), None

        zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, state.params))
        (nll, grads), _ = jax.lax.scan(micro, zeros, batch)
    with jax.named_scope("optimizer"):
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
    metrics = {"loss": nll / jnp.maximum(n, 1.0), "tokens": n, "grad_norm": optax.tree.norm(grads)}
    return TrainState(state.step + 1, params, opt_state, state.rng), metrics


def make_train_step(graphdef, tx: optax.GradientTransformation, *, mesh=None, state=None, rules=None):
    """``train_step`` under ``jax.jit`` with the state donated.

    With a ``mesh`` (and an example ``state`` already placed by ``sharding.shard``), the state keeps its
    NamedShardings from step to step and the batch is split over the data-parallel axes (dim 1 of the
    (A, b, S) arrays).
    """
    fn = functools.partial(train_step, graphdef=graphdef, tx=tx)
    if mesh is None:
        return jax.jit(fn, donate_argnums=0)
    from jax.sharding import NamedSharding, PartitionSpec as P

    from murphyjax import sharding as sh

    if state is None:
        raise ValueError("state: make_train_step(mesh=...) needs the (sharded) state for its layout")
    state_sh = sh.shardings(state, mesh, rules or sh.LLAMA_RULES)
    batch_sh = NamedSharding(mesh, sh.batch_spec(mesh, 3, 1))
    return jax.jit(fn, donate_argnums=0, in_shardings=(state_sh, batch_sh),
                   out_shardings=(state_sh, NamedSharding(mesh, P())))


# ---------------------------------------------------------------- chat-formatted SFT data

def chat_example(tokenizer, messages: list[dict], max_len: int) -> dict[str, np.ndarray]:
    """Tokenize one conversation with the tokenizer's chat template; loss on assistant turns only.

    An assistant turn spans from the end of the template rendered with ``add_generation_prompt=True``
    on the preceding messages to the end of the template rendered through that turn (its end-of-turn
    token included, so the model learns to stop). Returns int32/bool arrays of length ``max_len``
    (right-padded with the pad token; truncated at ``max_len``).
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        start = len(tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True))
        end = len(tokenizer.apply_chat_template(messages[: i + 1], tokenize=False))
        if not text.startswith(tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)):
            raise ValueError("messages: the chat template does not render conversations prefix-consistently")
        spans.append((start, end))
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"][:max_len], np.int32)
    offs = enc["offset_mapping"][:max_len]
    loss = np.array([any(s <= a and b <= e for s, e in spans) for a, b in offs], bool)
    pad = max_len - len(ids)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return {"input_ids": np.pad(ids, (0, pad), constant_values=pad_id),
            "attention_mask": np.pad(np.ones(len(ids), bool), (0, pad)),
            "loss_mask": np.pad(loss, (0, pad))}


def stack_examples(examples: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def batch_at(data: dict[str, np.ndarray], step: int, batch_size: int, accum_steps: int = 1, seed: int = 0):
    """The batch of training step ``step``: a pure function of (data, step, seed), so resuming at any
    step replays the exact data order (data position = step * batch_size * accum_steps examples).

    Examples are drawn without replacement from a fresh permutation each epoch. Returns arrays shaped
    (accum_steps, batch_size, S).
    """
    n = len(next(iter(data.values())))
    per_step = batch_size * accum_steps
    idx = np.arange(step * per_step, (step + 1) * per_step)
    epoch, pos = idx // n, idx % n
    perms = {e: np.random.default_rng([seed, int(e)]).permutation(n) for e in np.unique(epoch)}
    rows = np.array([perms[e][p] for e, p in zip(epoch, pos)])
    return {k: v[rows].reshape(accum_steps, batch_size, *v.shape[1:]) for k, v in data.items()}


def fit(graphdef, state: TrainState, tx: optax.GradientTransformation, data: dict[str, np.ndarray], *,
        steps: int, batch_size: int, accum_steps: int = 1, seed: int = 0, mesh=None, checkpointer=None,
        save_every: int = 0, log_every: int = 0, log=print):
    """Train until ``state.step == steps``; resumes from ``checkpointer``'s latest step if there is one.

    The batch of step t is ``batch_at(data, t, ...)``, so an interrupted run (even killed with SIGKILL)
    continues from its last checkpoint with the same data and ends with bit-identical parameters.
    Returns (state, history) with one dict of float metrics per step run.
    """
    per_step = batch_size * accum_steps
    if checkpointer is not None and checkpointer.latest_step() is not None:
        state, meta = checkpointer.restore(like=state)
        if meta.get("data_position") != int(state.step) * per_step or meta.get("seed") != seed:
            raise ValueError(f"checkpoint {checkpointer.directory} was written with a different data order "
                             f"(meta {meta}, expected seed {seed} and {per_step} examples per step)")
        log(f"resumed from step {int(state.step)} ({checkpointer.directory})")
    step_fn = make_train_step(graphdef, tx, mesh=mesh, state=state)
    history = []
    for t in range(int(state.step), steps):
        batch = batch_at(data, t, batch_size, accum_steps, seed)
        if mesh is not None:
            from murphyjax.sharding import shard_batch
            batch = shard_batch(batch, mesh, batch_dim=1)
        state, metrics = step_fn(state, batch)
        history.append({"step": t + 1, **{k: float(v) for k, v in jax.device_get(metrics).items()}})
        if log_every and (t + 1) % log_every == 0:
            log(" ".join(f"{k}={v:.6g}" for k, v in history[-1].items()))
        if checkpointer is not None and save_every and ((t + 1) % save_every == 0 or t + 1 == steps):
            # a copy: the next step donates (reuses) the state's buffers while orbax may still read them
            checkpointer.save(t + 1, jax.tree.map(jnp.copy, state),
                              {"data_position": (t + 1) * per_step, "seed": seed})
    if checkpointer is not None:
        checkpointer.wait()
    return state, history
