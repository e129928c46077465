"""Training loops of the offline methods: reward model, DPO-family, SFT, with evaluation hooks.

Each loop is a pure function of (data, steps, seed): the batch of step t is ``train.batch_at(data, t, ...)``,
so the same seed gives the same parameters. ``on_eval(step, params)`` runs at the steps in
``eval_at`` (0 = before any update) and may return a dict, collected in the returned history; an
``OnsetMonitor`` fed from those dicts logs the reward-hacking onset event (``monitor_key``).
"""

from __future__ import annotations

import jax
import numpy as np

from murphyjax.align import core, preference
from murphyjax.align.codec import Seqs
from murphyjax.monitor import OnsetMonitor
from murphyjax.train import OptimizerConfig, batch_at


def run(step_fn, state, data: dict, make_batch, *, steps: int, batch_size: int, seed: int, params_of=lambda p: p,
        eval_at=(), on_eval=None, monitor: OnsetMonitor | None = None, log=None):
    """Generic loop: ``state, metrics = step_fn(state, make_batch(batch_at(data, t, batch_size, 1, seed)))``.

    Returns (state, history) with one dict per evaluation (``step`` plus ``on_eval``'s dict plus the
    last training metrics) and ``monitor`` events under ``"event"``.
    """
    history, last = [], {}
    eval_at = sorted(set(int(s) for s in eval_at))

    def evaluate(t):
        rec = {"step": t, **{f"train/{k}": v for k, v in last.items()}}
        if on_eval is not None:
            rec.update(on_eval(t, params_of(state.params)) or {})
        if monitor is not None and "proxy" in rec and "true" in rec:
            ev = monitor.update(t, proxy=rec["proxy"], true_utility=rec["true"])
            if ev:
                rec["event"] = ev
                if log:
                    log(f"  onset event: {ev}")
        history.append(rec)

    if 0 in eval_at:
        evaluate(0)
    for t in range(steps):
        state, m = step_fn(state, make_batch(batch_at(data, t, batch_size, 1, seed)))
        if t + 1 in eval_at:
            last = {k: float(v) for k, v in jax.device_get(m).items()}
            evaluate(t + 1)
    return state, history


def _trunk(graphdef, params, chosen: Seqs, rejected: Seqs) -> dict:
    """With ``trainable_layers`` in the model's config: the frozen trunk's activations of every pair,
    computed once ({} when every layer trains)."""
    if not core.merge(graphdef, params).config.trainable_layers:
        return {}
    feats = lambda s: core.batched(lambda i, m: core.trunk_features(graphdef, params, i, m),  # noqa: E731
                                   [s.ids, s.mask], min(64, len(s.ids)))
    return {"c_features": feats(chosen), "r_features": feats(rejected)}


def train_reward_model(graphdef, backbone, d_model: int, chosen: Seqs, rejected: Seqs, *, steps: int,
                       batch_size: int, opt: OptimizerConfig, seed: int = 0):
    """Bradley-Terry reward model: backbone copy + zero scalar head, trained on (chosen, rejected).

    With ``trainable_layers`` set in the model's config only the top layers train, so the activations
    leaving the frozen trunk are computed once for every pair and each step runs the top layers alone
    (the same parameters as running the whole stack every step, up to float round-off).

    Returns (params ``{"lm", "head"}``, final training metrics).
    """
    state = preference.new_state({"lm": backbone, "head": core.init_head(d_model)}, opt, seed)
    data = preference.pair_arrays(chosen, rejected, **_trunk(graphdef, backbone, chosen, rejected))
    step = lambda s, b: preference.reward_step(s, b, graphdef=graphdef, opt=opt)  # noqa: E731
    metrics = {}
    for t in range(steps):
        state, m = step(state, preference.pair_batch(batch_at(data, t, batch_size, 1, seed)))
        if t + 1 == steps:
            metrics = {k: float(v) for k, v in jax.device_get(m).items()}
    return state.params, metrics


def reward_accuracy(rm_graphdef, rm_params, chosen: Seqs, rejected: Seqs, truth_a_better=None, batch: int = 64):
    """Fraction of pairs the reward model orders as labelled (and, given ``truth_a_better``, as the truth)."""
    from murphyjax.align.evaluate import proxy_scores

    rc = proxy_scores(rm_graphdef, rm_params, chosen, batch)
    rr = proxy_scores(rm_graphdef, rm_params, rejected, batch)
    out = {"label_accuracy": float(np.mean(rc > rr))}
    if truth_a_better is not None:
        out["true_accuracy"] = float(np.mean((rc > rr) == np.asarray(truth_a_better, bool)))
    return out, rc, rr


def train_preference(graphdef, policy, ref_logps_c, ref_logps_r, chosen: Seqs, rejected: Seqs, *, loss,
                     beta: float, steps: int, batch_size: int, opt: OptimizerConfig, seed: int = 0,
                     margin=None, eval_at=(), on_eval=None, monitor=None, log=None, prompt_len: int | None = None):
    """DPO / IPO / f-DPO from ``policy`` with precomputed reference log-probs; returns (params, history).

    ``prompt_len``: the sequences use the codec layout (completion in slots [prompt_len, S)), so the
    logits are formed only where they are needed. With ``trainable_layers`` the frozen trunk's
    activations are computed once (the policy's trunk is the reference's) and each step runs the top
    layers alone."""
    # the margin is always present (zeros by default) so MAPS and plain runs share one compiled step
    m = np.zeros(len(chosen.ids), np.float32) if margin is None else np.asarray(margin, np.float32)
    extra = {"ref_c": ref_logps_c, "ref_r": ref_logps_r, "margin": m, **_trunk(graphdef, policy, chosen, rejected)}
    data = preference.pair_arrays(chosen, rejected, **extra)
    state = preference.new_state(policy, opt, seed)
    b = np.float32(beta)
    step = lambda s, bt: preference.preference_step(s, bt, b, graphdef=graphdef, opt=opt, loss=loss,  # noqa: E731
                                                    prompt_len=prompt_len)
    state, hist = run(step, state, data, preference.pair_batch, steps=steps, batch_size=batch_size, seed=seed,
                      eval_at=eval_at, on_eval=on_eval, monitor=monitor, log=log)
    return state.params, hist


def train_sft(graphdef, policy, seqs: Seqs, *, steps: int, batch_size: int, opt: OptimizerConfig, seed: int = 0,
              eval_at=(), on_eval=None, monitor=None, log=None):
    """Supervised fine-tuning on (prompt, completion) sequences; returns (params, history)."""
    state = preference.new_state(policy, opt, seed)
    data = {"ids": seqs.ids, "mask": seqs.mask, "cmask": seqs.cmask}
    state, hist = run(preference.sft_step(graphdef, opt), state, data, preference.sft_batch, steps=steps,
                      batch_size=batch_size, seed=seed, eval_at=eval_at, on_eval=on_eval, monitor=monitor, log=log)
    return state.params, hist
