"""Sampling with a KV cache, and the per-token log-probs a training step uses.

Two log-probs are reported for every sampled token y_t:

* ``logprobs``: log pi(y_t | x, y_<t) of the model itself (temperature 1, no truncation). This is what
  ``sequence_logprobs`` computes in a training step, and the two agree to float32 round-off for every
  sampling setting: this is the number to use in policy-gradient ratios, KL terms and DPO.
* ``sampling_logprobs``: log q(y_t | ...) of the distribution the token was actually drawn from,
  q = softmax(truncate(logits / T)) renormalised over the kept tokens (top-k, then top-p, as in HF).
  It equals ``logprobs`` only at temperature 1 without truncation; it is 0 for greedy decoding
  (temperature 0: q is a point mass). Importance weights between the behaviour distribution q and the
  policy pi are exp(logprobs - sampling_logprobs).

Prompts may be left- or right-padded (any mask whose valid tokens are in order); they are left-aligned
first, and positions count valid tokens only, so padding changes nothing but round-off.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from murphyjax.llm.model import KVCache, Llama, positions_from_mask


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How to sample. Static under jit: each distinct config compiles once.

    ``temperature=0`` is greedy. ``top_k=0`` and ``top_p=1`` switch truncation off; ties at a cutoff
    are kept. Generation of a row stops after it emits any of ``stop_tokens`` (the stop token is part
    of the completion); later slots hold ``pad_id`` with mask 0.
    """

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    stop_tokens: tuple[int, ...] = ()
    pad_id: int = 0

    def __post_init__(self):
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be a non-negative integer (0 = off), got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (1 = off), got {self.top_p!r}")
        object.__setattr__(self, "stop_tokens", tuple(int(t) for t in self.stop_tokens))


class Samples(NamedTuple):
    """Output of ``sample``. Arrays (B, P) for the prompt, (B, N) for the completion."""

    prompt_ids: jax.Array  # left-aligned prompt
    prompt_mask: jax.Array
    tokens: jax.Array  # int32, pad_id after a stop token
    mask: jax.Array  # bool, True for generated tokens (stop token included)
    logprobs: jax.Array  # float32 log pi(token), model at T=1; 0 where mask is False
    sampling_logprobs: jax.Array  # float32 log q(token), the distribution sampled from; 0 where masked

    def sequences(self):
        """(ids, attention_mask, completion_mask), each (B, P + N), ready for ``sequence_logprobs``."""
        ids = jnp.concatenate([self.prompt_ids, self.tokens], 1)
        mask = jnp.concatenate([self.prompt_mask.astype(bool), self.mask], 1)
        completion = jnp.concatenate([jnp.zeros_like(self.prompt_mask, bool), self.mask], 1)
        return ids, mask, completion


def token_logprobs(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log softmax(logits)[target] = logits[target] - logsumexp(logits), in float32.

    Args: logits (..., V); targets (...) integer. Returns (...) float32.
    """
    return _token_logprobs(logits.astype(jnp.float32), targets.astype(jnp.int32))


def hidden_logprobs(model: Llama, h: jax.Array, targets: jax.Array) -> jax.Array:
    """log pi(target | h): the output projection and ``token_logprobs`` of final hidden states.

    Args: h (..., D) hidden states after the final norm; targets (...) integer. Returns (...) float32.
    The rows are flattened to (N, D) first, so the (N, V) logits, their softmax gradient and the head's
    weight gradient stay 2-D matrices (3-D logits cost extra transposed copies of the (..., V) buffer
    in the backward pass on CPU: 6 % of a DPO step on SmolLM2-135M, measured).
    """
    lead = h.shape[:-1]
    logits = model.logits(h.reshape(-1, h.shape[-1]))
    return token_logprobs(logits, targets.reshape(-1)).reshape(lead)


@jax.custom_vjp
def _token_logprobs(logits, targets):
    return _token_logprobs_fwd(logits, targets)[0]


def _token_logprobs_fwd(logits, targets):
    lse = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[..., None], -1)[..., 0]
    return picked - lse, (logits, lse, targets)


def _token_logprobs_bwd(res, g):
    # d/dlogits = g * (onehot(target) - softmax(logits)): one pass over the (..., V) logits, where
    # autodiff would also zero-fill a (..., V) buffer and scatter the gather's cotangent into it
    logits, lse, targets = res
    onehot = jax.lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1) == targets[..., None]
    return g[..., None] * (onehot.astype(logits.dtype) - jnp.exp(logits - lse[..., None])), None


_token_logprobs.defvjp(_token_logprobs_fwd, _token_logprobs_bwd)


@nnx.jit
def sequence_logprobs(model: Llama, ids: jax.Array, mask: jax.Array, completion_mask: jax.Array) -> jax.Array:
    """Per-token log-probs of the completion tokens, aligned with ``ids``.

    out[b, t] = log pi(ids[b, t] | ids[b, <t]) where completion_mask[b, t], else 0 (always 0 at t = 0).
    Sum over t for a sequence log-prob (TRL's ``logps``).

    Args:
      model: the policy.
      ids: (B, S) token ids. mask: (B, S) attention mask (1 = real token).
      completion_mask: (B, S) which tokens to score (completion, not prompt, not padding).

    Returns: (B, S) float32.
    """
    logits = model(ids, mask)
    lp = token_logprobs(logits[:, :-1], ids[:, 1:])
    lp = jnp.concatenate([jnp.zeros_like(lp[:, :1]), lp], 1)
    return jnp.where(completion_mask.astype(bool), lp, 0.0)


def left_align(ids: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Move each row's padding to the left, keeping the order of its valid tokens."""
    order = jnp.argsort(mask.astype(jnp.int32), axis=1, stable=True)
    return jnp.take_along_axis(ids, order, 1), jnp.take_along_axis(mask.astype(bool), order, 1)


def _truncate(z: jax.Array, top_k: int, top_p: float) -> jax.Array:
    """Set logits outside the top-k, then outside the top-p nucleus, to -inf (HF order and semantics)."""
    if top_k and top_k < z.shape[-1]:
        kth = jax.lax.top_k(z, top_k)[0][..., -1:]
        z = jnp.where(z < kth, -jnp.inf, z)
    if top_p < 1.0:
        zs = jnp.sort(z, axis=-1)[..., ::-1]
        ps = jax.nn.softmax(zs, axis=-1)
        keep = (jnp.cumsum(ps, -1) - ps) < top_p  # smallest prefix whose mass reaches top_p
        cutoff = jnp.min(jnp.where(keep, zs, jnp.inf), axis=-1, keepdims=True)
        z = jnp.where(z < cutoff, -jnp.inf, z)
    return z


def choose(logits: jax.Array, key: jax.Array, cfg: SamplingConfig):
    """Pick next tokens from (B, V) logits. Returns (tokens, model log-probs, sampling log-probs)."""
    logits = logits.astype(jnp.float32)
    if cfg.temperature == 0:
        tok = jnp.argmax(logits, -1).astype(jnp.int32)
        lq = jnp.zeros(tok.shape, jnp.float32)
    else:
        z = _truncate(logits / cfg.temperature, cfg.top_k, cfg.top_p)
        tok = jax.random.categorical(key, z, axis=-1).astype(jnp.int32)
        lq = token_logprobs(z, tok)
    return tok, token_logprobs(logits, tok), lq


def sample(model: Llama, prompt_ids: jax.Array, prompt_mask: jax.Array | None, key: jax.Array,
           config: SamplingConfig = SamplingConfig(), repeats: int = 1) -> Samples:
    """Sample completions of a batch of prompts with a KV cache, under ``jax.jit``.

    Args:
      model: the policy.
      prompt_ids: (B, P) int token ids, left- or right-padded.
      prompt_mask: (B, P) 1 for real tokens (None: all real).
      key: a JAX PRNG key (all randomness of the call comes from it).
      config: sampling settings.
      repeats: samples per prompt; each prompt is prefilled once and its cache shared by its
        ``repeats`` rows (row ``i * repeats + j`` is sample ``j`` of prompt ``i``).

    Returns: ``Samples`` with B * repeats rows.
    """
    prompt_ids = jnp.asarray(prompt_ids, jnp.int32)
    prompt_mask = jnp.ones(prompt_ids.shape, bool) if prompt_mask is None else jnp.asarray(prompt_mask, bool)
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    graphdef, state = nnx.split(model)
    return _sample(graphdef, state, prompt_ids, prompt_mask, key, config, repeats)


class PromptStates(NamedTuple):
    """A batch of left-aligned prompts after prefill: what every completion of them is computed against."""

    ids: jax.Array  # (B, P) left-aligned prompt
    mask: jax.Array  # (B, P)
    cache: KVCache  # P prompt slots written, room for the completion
    last: jax.Array  # (B, D) final hidden state at the last prompt token (predicts completion token 0)


def prefill(model: Llama, ids: jax.Array, mask: jax.Array, new_tokens: int) -> PromptStates:
    """Left-align and prefill prompts into a cache with ``new_tokens`` free slots (traceable)."""
    ids, mask = left_align(ids, mask)
    b, p = ids.shape
    cache = KVCache.init(model.config, b, p + new_tokens)
    h, cache = model.hidden(ids, mask, positions_from_mask(mask), cache)
    return PromptStates(ids, mask, cache, h[:, -1])


def repeat_states(st: PromptStates, repeats: int) -> PromptStates:
    """Each prompt's states ``repeats`` times in a row (rows i * repeats + j)."""
    if repeats == 1:
        return st
    r = lambda x, axis=0: jnp.repeat(x, repeats, axis)  # noqa: E731
    c = st.cache
    return PromptStates(r(st.ids), r(st.mask), KVCache(r(c.k, 1), r(c.v, 1), r(c.valid), c.index), r(st.last))


@functools.partial(jax.jit, static_argnames=("graphdef", "config", "repeats"))
def _sample(graphdef, state, ids, mask, key, config: SamplingConfig, repeats: int = 1) -> Samples:
    model = nnx.merge(graphdef, state)
    return decode_from(model, prefill(model, ids, mask, config.max_new_tokens), key, config, repeats)


def decode_from(model: Llama, st: PromptStates, key: jax.Array, config: SamplingConfig, repeats: int = 1) -> Samples:
    """Sample completions from prefilled prompts (traceable; ``sample`` is prefill + this under jit)."""
    st = repeat_states(st, repeats)
    ids, mask, cache = st.ids, st.mask, st.cache
    b = ids.shape[0]
    n = config.max_new_tokens
    logits = model.logits(st.last)
    stops = jnp.asarray(config.stop_tokens or (-1,), jnp.int32)
    layers = model.blocks.unstacked()  # sliced once, not at every decode step

    def body(carry):
        i, cache, logits, key, done, pos, out = carry
        key, sub = jax.random.split(key)
        tok, lp, lq = choose(logits, sub, config)
        live = ~done
        tok = jnp.where(live, tok, config.pad_id)
        out = jax.tree.map(lambda o, x: o.at[:, i].set(x), out,
                           (tok, live, jnp.where(live, lp, 0.0), jnp.where(live, lq, 0.0)))
        done = done | jnp.isin(tok, stops)

        def forward(cache):
            h, cache = model.hidden(tok[:, None], live[:, None], pos[:, None], cache, layers)
            return model.logits(h[:, 0]), cache

        logits, cache = jax.lax.cond(i + 1 < n, forward, lambda c: (logits, c), cache)
        return i + 1, cache, logits, key, done, pos + 1, out

    out = (jnp.full((b, n), config.pad_id, jnp.int32), jnp.zeros((b, n), bool),
           jnp.zeros((b, n), jnp.float32), jnp.zeros((b, n), jnp.float32))
    carry = (jnp.zeros((), jnp.int32), cache, logits, key, jnp.zeros((b,), bool),
             jnp.sum(mask, 1, dtype=jnp.int32), out)
    carry = jax.lax.while_loop(lambda c: (c[0] < n) & ~jnp.all(c[4]), body, carry)
    tokens, live, lp, lq = carry[-1]
    return Samples(ids, mask, tokens, live, lp, lq)


class TrunkStates(NamedTuple):
    """Left-aligned prompts after the lower ``split`` layers (a frozen trunk shared by several models)."""

    ids: jax.Array  # (B, P) left-aligned prompt
    mask: jax.Array  # (B, P)
    cache: KVCache  # layers [0, split): P prompt slots written, room for the completion
    x: jax.Array  # (B, P, D) activations leaving layer split - 1


def prefill_trunk(model: Llama, ids: jax.Array, mask: jax.Array, new_tokens: int, split: int) -> TrunkStates:
    """Left-align prompts and run the lower ``split`` layers over them into a cache (traceable)."""
    ids, mask = left_align(ids, mask)
    b, p = ids.shape
    cache = KVCache.init(model.config, b, p + new_tokens, layers=split)
    x, cache = model.hidden(ids, mask, positions_from_mask(mask), cache, last=split)
    return TrunkStates(ids, mask, cache, x)


def prefill_top(model: Llama, trunk: TrunkStates, split: int) -> PromptStates:
    """The upper layers [split, L) of ``model`` over prompts whose trunk ran (traceable): prompt states whose
    cache holds those layers only. For a model whose lower layers are the trunk's, ``prefill`` split in two."""
    b, t = trunk.cache.valid.shape
    cache = KVCache.init(model.config, b, t, layers=model.config.num_layers - split)
    h, cache = model.hidden(trunk.ids, trunk.mask, positions_from_mask(trunk.mask), cache, inputs=trunk.x, first=split)
    return PromptStates(trunk.ids, trunk.mask, cache, h[:, -1])


def _repeat_cache(c: KVCache, repeats: int) -> KVCache:
    if repeats == 1:
        return c
    return KVCache(jnp.repeat(c.k, repeats, 1), jnp.repeat(c.v, repeats, 1), jnp.repeat(c.valid, repeats, 0), c.index)


def decode_split(model: Llama, trunk: TrunkStates, top: PromptStates, key: jax.Array, config: SamplingConfig,
                 repeats: int, split: int):
    """``decode_from`` on prompt states held as a trunk (layers [0, split)) and the model's own upper
    layers (traceable): the same samples, and what a model sharing the trunk needs to score them.

    Returns ``(samples, x, pred)``: ``x[:, t]`` (B, N, D) the activations of completion token t leaving
    layer split - 1 (shared by every model with this trunk), ``pred[:, t]`` the model's final hidden
    state that predicted token t (its logits are the sampling logits).
    """
    b0 = trunk.ids.shape[0]
    ids, mask = jnp.repeat(trunk.ids, repeats, 0), jnp.repeat(trunk.mask, repeats, 0)
    tcache, ucache = _repeat_cache(trunk.cache, repeats), _repeat_cache(top.cache, repeats)
    last = jnp.repeat(top.last, repeats, 0)
    b, n, d = b0 * repeats, config.max_new_tokens, last.shape[-1]
    stops = jnp.asarray(config.stop_tokens or (-1,), jnp.int32)
    layers = model.blocks.unstacked()

    def body(carry):
        i, tcache, ucache, h, key, done, pos, out = carry
        key, sub = jax.random.split(key)
        tok, lp, lq = choose(model.logits(h), sub, config)
        live = ~done
        tok = jnp.where(live, tok, config.pad_id)
        x, tcache = model.hidden(tok[:, None], live[:, None], pos[:, None], tcache, layers, last=split)

        def upper(ucache):
            h2, ucache = model.hidden(tok[:, None], live[:, None], pos[:, None], ucache, layers, inputs=x, first=split)
            return h2[:, 0], ucache

        h_next, ucache = jax.lax.cond(i + 1 < n, upper, lambda c: (h, c), ucache)
        out = jax.tree.map(lambda o, v: o.at[:, i].set(v), out,
                           (tok, live, jnp.where(live, lp, 0.0), jnp.where(live, lq, 0.0), x[:, 0], h))
        done = done | jnp.isin(tok, stops)
        return i + 1, tcache, ucache, h_next, key, done, pos + 1, out

    dt = last.dtype
    out = (jnp.full((b, n), config.pad_id, jnp.int32), jnp.zeros((b, n), bool), jnp.zeros((b, n), jnp.float32),
           jnp.zeros((b, n), jnp.float32), jnp.zeros((b, n, d), dt), jnp.zeros((b, n, d), dt))
    carry = (jnp.zeros((), jnp.int32), tcache, ucache, last, key, jnp.zeros((b,), bool),
             jnp.sum(mask, 1, dtype=jnp.int32), out)
    carry = jax.lax.while_loop(lambda c: (c[0] < n) & ~jnp.all(c[5]), body, carry)
    tokens, live, lp, lq, xs, pred = carry[-1]
    return Samples(ids, mask, tokens, live, lp, lq), xs, pred


def completion_hidden_top(model: Llama, top: PromptStates, x: jax.Array, tokens: jax.Array, tmask: jax.Array,
                          split: int):
    """``completion_hidden`` for a model sharing a trunk: its upper layers run from the completion's trunk
    activations ``x`` (``decode_split``) against its own upper-layer prompt states ``top``."""
    tmask = tmask.astype(bool)
    pos = jnp.sum(top.mask, 1, dtype=jnp.int32)[:, None] + jnp.maximum(jnp.cumsum(tmask, 1, dtype=jnp.int32) - 1, 0)
    h, _ = model.hidden(tokens, tmask, pos, top.cache, inputs=x, first=split)
    pred = jnp.concatenate([top.last[:, None], h[:, :-1]], 1)
    n = tmask.shape[1]
    last_i = n - 1 - jnp.argmax(tmask[:, ::-1], axis=1)
    return pred, jnp.take_along_axis(h, last_i[:, None, None], 1)[:, 0]


def completion_hidden(model: Llama, st: PromptStates, tokens: jax.Array, tmask: jax.Array):
    """Hidden states of given completions against prefilled prompts (traceable), without recomputing the prompt.

    Returns ``(pred, last)``: ``pred[:, t]`` (B, N, D) is the state that predicts completion token t
    (the prompt's last state for t = 0), ``last`` (B, D) the state at each row's last valid completion
    token (where a reward model's head reads). The same numbers as a forward pass over prompt +
    completion, up to float round-off.
    """
    tmask = tmask.astype(bool)
    pos = jnp.sum(st.mask, 1, dtype=jnp.int32)[:, None] + jnp.maximum(jnp.cumsum(tmask, 1, dtype=jnp.int32) - 1, 0)
    h, _ = model.hidden(tokens, tmask, pos, st.cache)
    pred = jnp.concatenate([st.last[:, None], h[:, :-1]], 1)
    n = tmask.shape[1]
    last_i = n - 1 - jnp.argmax(tmask[:, ::-1], axis=1)
    last = jnp.take_along_axis(h, last_i[:, None, None], 1)[:, 0]
    return pred, last


def generate_text(model: Llama, tokenizer, prompts: list[str] | list[list[dict]], key: jax.Array | None = None,
                  config: SamplingConfig | None = None, *, chat: bool = True) -> list[str]:
    """Convenience: complete text prompts (or chat message lists, formatted with the chat template).

    Greedy with stop at the tokenizer's EOS unless ``config`` says otherwise.
    """
    if chat:
        prompts = [tokenizer.apply_chat_template(m if isinstance(m, list) else [{"role": "user", "content": m}],
                                                 tokenize=False, add_generation_prompt=True) for m in prompts]
    enc = tokenizer(prompts, padding=True, return_tensors="np", add_special_tokens=False)
    if config is None:
        stops = tuple(t for t in (tokenizer.eos_token_id,) if t is not None)
        config = SamplingConfig(max_new_tokens=64, temperature=0.0, stop_tokens=stops,
                                pad_id=tokenizer.pad_token_id or 0)
    key = jax.random.key(0) if key is None else key
    out = sample(model, enc["input_ids"], enc["attention_mask"], key, config)
    return [tokenizer.decode([int(t) for t, m in zip(row, msk) if m], skip_special_tokens=True)
            for row, msk in zip(out.tokens, out.mask)]
