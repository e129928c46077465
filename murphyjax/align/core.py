"""The shared core of every alignment method: forward passes, completion log-probs, scalar heads,
rollouts, KL to the reference (estimated and exact), and parameter files.

Everything is a pure function of ``(graphdef, params, arrays)`` so the method steps (``preference``,
``reward_model``, ``rl``) are plain ``jax.jit`` programs with the model structure static and every
tunable number (beta, KL coefficient) traced: one compilation serves every run of a sweep.

    logits = forward(graphdef, params, ids, mask)                 # (B, S, V) float32
    lp = completion_logps(logits, ids, cmask)                     # (B, S), 0 off the completion
    r = scalar_scores(graphdef, params, ids, mask)                # reward model: {"lm", "head"}

Log-prob convention (TRL, levanter, tunix): lp[b, t] = log pi(ids[b, t] | ids[b, <t]) on completion
tokens, 0 elsewhere; a sequence log-prob is the sum over t.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from murphyjax import losses
from murphyjax.llm import Llama, SamplingConfig, positions_from_mask, sample
from murphyjax.llm.sampling import (PromptStates, TrunkStates, completion_hidden, completion_hidden_top, decode_from,
                                    decode_split, hidden_logprobs, prefill, prefill_top, prefill_trunk, repeat_states,
                                    token_logprobs)

F32 = jnp.float32


def split(model: Llama):
    """(graphdef, params) of a model: the structure (static) and its nnx.Param state."""
    return nnx.split(model, nnx.Param)


def merge(graphdef, params) -> Llama:
    return nnx.merge(graphdef, params)


def hidden(graphdef, params, ids, mask, features=None):
    """Final hidden states (B, S, D) after the last norm, and the model. ``features``: the frozen trunk's
    activations of these rows (``trunk_features``); only the trained top layers then run."""
    model = nnx.merge(graphdef, params)
    if features is None:
        h, _ = model.hidden(ids, mask, positions_from_mask(mask))
    else:
        h, _ = model.hidden(ids, mask, positions_from_mask(mask), inputs=features, first=_frozen(model))
    return h, model


def _frozen(model) -> int:
    """The number of lower layers ``trainable_layers`` freezes."""
    return model.config.num_layers - model.config.trainable_layers


def forward(graphdef, params, ids, mask):
    """Logits (B, S, V) float32 of a causal forward pass."""
    h, model = hidden(graphdef, params, ids, mask)
    return model.logits(h)


def completion_logps(logits, ids, cmask):
    """Per-token log-probs of the completion, aligned with ``ids`` (0 at t = 0 and off ``cmask``)."""
    lp = token_logprobs(logits[:, :-1], ids[:, 1:])
    lp = jnp.concatenate([jnp.zeros_like(lp[:, :1]), lp], 1)
    return jnp.where(cmask, lp, 0.0)


def completion_sums(graphdef, params, ids, mask, cmask, prompt_len: int | None = None, features=None):
    """Summed completion log-probs (B,) in one forward.

    With ``prompt_len`` (static; the completion lies in slots [prompt_len, S), as in the codec layout),
    the output projection and softmax run only at the S - prompt_len positions that predict completion
    tokens: the (B, S, V) logits of the prompt positions are never formed. ``features``: the frozen
    trunk's activations of these rows (``trunk_features``); only the trained top layers then run.
    """
    if features is None and prompt_len is None:
        return completion_logps(forward(graphdef, params, ids, mask), ids, cmask).sum(-1)
    h, model = hidden(graphdef, params, ids, mask, features)
    if prompt_len is None:
        return completion_logps(model.logits(h), ids, cmask).sum(-1)
    lp = hidden_logprobs(model, h[:, prompt_len - 1:-1], ids[:, prompt_len:])
    return jnp.sum(jnp.where(cmask[:, prompt_len:], lp, 0.0), -1)


# --------------------------------------------------------------------------- scalar heads
def init_head(d: int) -> dict:
    """A scalar head h -> h.w + b, zero-initialised (a reward model starts at r = 0, BT loss log 2)."""
    return {"w": jnp.zeros((d,), F32), "b": jnp.zeros((), F32)}


def last_index(mask):
    """Index of the last valid token of each row (right-padded completions)."""
    S = mask.shape[1]
    return S - 1 - jnp.argmax(mask[:, ::-1], axis=1)


@functools.partial(jax.jit, static_argnames="graphdef")
def trunk_features(graphdef, params, ids, mask):
    """Activations (B, S, D) leaving the frozen lower layers (``trainable_layers``): fixed while the top
    layers train, so a training loop on a fixed dataset computes them once."""
    model = nnx.merge(graphdef, params)
    x, _ = model.hidden(ids, mask, positions_from_mask(mask), last=_frozen(model))
    return x


def scalar_scores(graphdef, params, ids, mask, features=None):
    """Reward-model scores r(x, y) (B,): the head on the hidden state of the last valid token.

    ``params = {"lm": backbone params, "head": init_head(d)}``. ``features``: the frozen trunk's
    activations of these rows (``trunk_features``); only the trained top layers then run.
    """
    h, _ = hidden(graphdef, params["lm"], ids, mask, features)
    last = jnp.take_along_axis(h, last_index(mask)[:, None, None], 1)[:, 0]
    return last.astype(F32) @ params["head"]["w"] + params["head"]["b"]


@functools.partial(jax.jit, static_argnames="graphdef")
def reward_scores(graphdef, params, ids, mask):
    """Jitted ``scalar_scores``."""
    return scalar_scores(graphdef, params, ids, mask)


def padded_chunks(arrays, batch: int):
    """``(k, chunk)`` for consecutive row chunks of ``arrays``: ``batch`` rows each, the last padded by
    repeating its final row (one compiled shape); ``k`` is how many of its rows are real."""
    for s in range(0, len(arrays[0]), batch):
        chunk = [a[s:s + batch] for a in arrays]
        k = len(chunk[0])
        if k < batch:
            chunk = [np.concatenate([c, np.repeat(c[-1:], batch - k, 0)]) for c in chunk]
        yield k, chunk


def batched(fn, arrays, batch: int):
    """Apply ``fn(*chunk)`` over row chunks of ``arrays`` (last chunk padded by repetition), concat on host."""
    outs = [jax.tree.map(lambda x: np.asarray(x)[:k], fn(*chunk)) for k, chunk in padded_chunks(arrays, batch)]
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


# --------------------------------------------------------------------------- log-probs and KL
@functools.partial(jax.jit, static_argnames="graphdef")
def sequence_logps(graphdef, params, ids, mask, cmask):
    """Summed completion log-probs (B,) (e.g. reference log-probs precomputed once for a dataset)."""
    return completion_logps(forward(graphdef, params, ids, mask), ids, cmask).sum(-1)


@functools.partial(jax.jit, static_argnames=("graphdef", "prompt_len"))
def kl_to_reference(graphdef, params, ref_params, ids, mask, cmask, temperature=1.0, prompt_len: int | None = None):
    """KL(q || pi_ref) along sampled sequences, q the sampling law softmax(logits / T).

    Returns per-sequence sums (B,) of ``exact`` (the per-token KL over the whole vocabulary, summed
    along the sampled prefix: an unbiased, lower-variance estimate of the sequence KL; exact per
    prefix), ``k1`` (log q - log pi_ref of the sampled tokens, unbiased, may be negative) and ``k3``
    (r - 1 - log r, unbiased, >= 0), and ``entropy`` (of q, summed along the sequence).

    With ``prompt_len`` (static; the completion lies in slots [prompt_len, S), the codec layout) the
    output projection and the vocabulary-wide sums run only at the positions that predict completion
    tokens (the same sums: every other position is masked).
    """
    start = 1 if prompt_len is None else prompt_len
    h, model = hidden(graphdef, params, ids, mask)
    h_ref, ref_model = hidden(graphdef, ref_params, ids, mask)
    return _kl_terms(model, ref_model, h[:, start - 1:-1], h_ref[:, start - 1:-1], ids[:, start:], cmask[:, start:],
                     temperature)


def _kl_terms(model, ref_model, h, h_ref, tgt, m, temperature):
    """Per-sequence exact / k1 / k3 KL and entropy from the hidden states (B, N, D) that predict the
    targets ``tgt`` (B, N) under the policy and the reference; ``m`` masks the scored tokens."""
    D = h.shape[-1]
    logits = model.logits(h.reshape(-1, D)) / temperature
    ref_logits = ref_model.logits(h_ref.reshape(-1, D))
    tgt = tgt.reshape(-1)
    shape = m.shape
    q_lp = token_logprobs(logits, tgt).reshape(shape)
    ref_lp = token_logprobs(ref_logits, tgt).reshape(shape)
    exact = losses.exact_kl_per_token(logits, ref_logits).reshape(shape)
    lq = jax.nn.log_softmax(logits, -1)
    ent = -jnp.sum(jnp.exp(lq) * lq, -1).reshape(shape)
    return {"exact": jnp.sum(exact * m, 1),
            "k1": jnp.sum(losses.kl_per_token(q_lp, ref_lp, "k1") * m, 1),
            "k3": jnp.sum(losses.kl_per_token(q_lp, ref_lp, "k3") * m, 1),
            "entropy": jnp.sum(ent * m, 1)}


# --------------------------------------------------------------------------- prompt states (fused evaluation)
@functools.partial(jax.jit, static_argnames=("graphdef", "new_tokens"))
def prompt_states(graphdef, params, ids, mask, new_tokens: int) -> PromptStates:
    """Prefilled prompts (``murphyjax.llm.sampling.prefill``): sampled from and scored against without
    running the prompt through the model again."""
    return prefill(nnx.merge(graphdef, params), ids, mask, new_tokens)


@functools.partial(jax.jit, static_argnames=("graphdef", "config", "repeats"))
def rollout_from(graphdef, params, states: PromptStates, key, config: SamplingConfig, repeats: int = 1):
    """``repeats`` samples of every prefilled prompt (rows i * repeats + j)."""
    return decode_from(nnx.merge(graphdef, params), states, key, config, repeats)


@functools.partial(jax.jit, static_argnames=("graphdef", "repeats"))
def completion_rewards(graphdef, rm_params, states: PromptStates, tokens, tmask, repeats: int = 1):
    """Reward-model scores of completions against the reward model's own prefilled prompts (rows
    i * repeats + j complete prompt i): ``scalar_scores`` of prompt + completion, the prompt not recomputed."""
    _, last = completion_hidden(nnx.merge(graphdef, rm_params["lm"]), repeat_states(states, repeats), tokens, tmask)
    return last.astype(F32) @ rm_params["head"]["w"] + rm_params["head"]["b"]


@functools.partial(jax.jit, static_argnames=("graphdef", "repeats"))
def completion_sequence_logps(graphdef, params, states: PromptStates, tokens, tmask, repeats: int = 1):
    """Summed log-probs (B,) of given completions against prefilled prompts (``sequence_logps`` of
    prompt + completion, the prompt not recomputed)."""
    model = nnx.merge(graphdef, params)
    h, _ = completion_hidden(model, repeat_states(states, repeats), tokens, tmask)
    return jnp.sum(jnp.where(tmask, hidden_logprobs(model, h, tokens), 0.0), -1)


@functools.partial(jax.jit, static_argnames=("graphdef", "repeats"))
def completion_kl(graphdef, params, ref_params, states: PromptStates, ref_states: PromptStates, tokens, tmask,
                  temperature=1.0, repeats: int = 1):
    """``kl_to_reference`` of completions against prefilled prompts of the policy and of the reference."""
    model, ref_model = nnx.merge(graphdef, params), nnx.merge(graphdef, ref_params)
    h, _ = completion_hidden(model, repeat_states(states, repeats), tokens, tmask)
    h_ref, _ = completion_hidden(ref_model, repeat_states(ref_states, repeats), tokens, tmask)
    return _kl_terms(model, ref_model, h, h_ref, tokens, tmask.astype(F32), temperature)


# --------------------------------------------------------------------------- a shared frozen trunk
def shared_trunk(graphdef, *param_sets) -> int:
    """The number of lower layers every one of ``param_sets`` (backbone params of ``graphdef``) holds
    identically, when the model freezes them (``trainable_layers``) and the embedding is the same too;
    0 otherwise. Models that agree there can share the trunk's prompt states and completion activations."""
    cfg = nnx.merge(graphdef, param_sets[0]).config
    split = cfg.num_layers - cfg.trainable_layers if cfg.trainable_layers else 0
    if split == 0 or len(param_sets) < 2:
        return split
    trunks = [_trunk_arrays(graphdef, p, split) for p in param_sets]
    same = all(bool(jnp.array_equal(a, b)) for t in trunks[1:] for a, b in zip(jax.tree.leaves(trunks[0]), jax.tree.leaves(t)))
    return split if same else 0


def _trunk_arrays(graphdef, params, split: int):
    model = nnx.merge(graphdef, params)
    blocks = model.blocks.arrays() if model.blocks.stacked else None
    lower = {n: w[:split] for n, w in blocks.items()} if blocks is not None else \
        [{n: getattr(layer, n)[...] for n in model.blocks.NAMES} for layer in model.blocks.layers[:split]]
    return {"embed": model.embed[...], "blocks": lower}


@functools.partial(jax.jit, static_argnames=("graphdef", "new_tokens", "split"))
def trunk_states(graphdef, params, ids, mask, new_tokens: int, split: int) -> TrunkStates:
    """Prompts through the shared lower ``split`` layers (``murphyjax.llm.sampling.prefill_trunk``)."""
    return prefill_trunk(nnx.merge(graphdef, params), ids, mask, new_tokens, split)


@functools.partial(jax.jit, static_argnames=("graphdef", "split"))
def top_states(graphdef, params, trunk: TrunkStates, split: int) -> PromptStates:
    """A model's upper layers over prompts whose trunk ran (``prefill_top``)."""
    return prefill_top(nnx.merge(graphdef, params), trunk, split)


@functools.partial(jax.jit, static_argnames=("graphdef", "config", "repeats", "split"))
def rollout_split(graphdef, params, trunk: TrunkStates, top: PromptStates, key, config: SamplingConfig, repeats: int,
                  split: int):
    """``rollout_from`` on trunk + upper states: (Samples, trunk activations, predicting states) (``decode_split``)."""
    return decode_split(nnx.merge(graphdef, params), trunk, top, key, config, repeats, split)


@functools.partial(jax.jit, static_argnames=("graphdef", "repeats", "split"))
def completion_rewards_top(graphdef, rm_params, top: PromptStates, x, tokens, tmask, repeats: int, split: int):
    """``completion_rewards`` of a reward model sharing the trunk: its upper layers only."""
    _, last = completion_hidden_top(nnx.merge(graphdef, rm_params["lm"]), repeat_states(top, repeats), x, tokens, tmask,
                                    split)
    return last.astype(F32) @ rm_params["head"]["w"] + rm_params["head"]["b"]


@functools.partial(jax.jit, static_argnames=("graphdef", "repeats", "split"))
def completion_kl_top(graphdef, params, ref_params, pred, ref_top: PromptStates, x, tokens, tmask, temperature=1.0,
                      repeats: int = 1, split: int = 0):
    """``completion_kl`` where the policy's predicting states ``pred`` come from its own decode and the
    reference (sharing the trunk) runs its upper layers only."""
    model, ref_model = nnx.merge(graphdef, params), nnx.merge(graphdef, ref_params)
    h_ref, _ = completion_hidden_top(ref_model, repeat_states(ref_top, repeats), x, tokens, tmask, split)
    return _kl_terms(model, ref_model, pred, h_ref, tokens, tmask.astype(F32), temperature)


# --------------------------------------------------------------------------- rollouts
def rollout(graphdef, params, prompt_ids, prompt_mask, key, config: SamplingConfig):
    """Sample completions (``murphyjax.llm.sample``, KV cache, jitted); returns ``Samples``."""
    return sample(nnx.merge(graphdef, params), prompt_ids, prompt_mask, key, config)


# --------------------------------------------------------------------------- parameter files
def _flat(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def save_params(path, tree) -> None:
    """Write a parameter pytree as safetensors (keys are the pytree paths; no pickle)."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    save_file(_flat(tree), str(tmp))
    tmp.replace(path)  # atomic: a killed run never leaves a truncated file


def load_params(path, like):
    """Read a pytree written by ``save_params`` into the structure (and dtypes) of ``like``."""
    from safetensors.numpy import load_file

    data = load_file(str(path))
    leaves = jax.tree_util.tree_leaves_with_path(like)
    missing = [jax.tree_util.keystr(k) for k, _ in leaves if jax.tree_util.keystr(k) not in data]
    if missing:
        raise ValueError(f"{path}: missing parameters {missing[:3]} (written for another model?)")
    vals = [jnp.asarray(data[jax.tree_util.keystr(k)], v.dtype) for k, v in leaves]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), vals)


def copy_tree(tree):
    """A detached copy (a frozen reference must not share buffers with donated training state)."""
    return jax.tree.map(jnp.copy, tree)
