"""Evaluate a policy: proxy reward, true utility, their gap, hard mass of the generations, KL to the reference.

``samples`` samples per evaluation prompt (temperature T); every quantity is a mean over samples:
  proxy   E[r(x, y)] under the reward model the method optimised (or learned from the same labels);
  true    E[U(x, y)], the task's exact utility of the generated text;
  hacked  E[H(x, y)], the hard mass of the generations (fraction in the hacked mode);
  kl_*    KL(q_T || pi_ref) per sequence: ``exact`` (full-vocabulary per-token KL summed along the
          sample), and the k1 / k3 estimators of the sampled tokens;
  drift   E_x Cov(H, r | x), the within-prompt covariance of the hacked flag and the proxy, and its
          standard error: by paper Prop. 1, applied to the per-prompt tilt pi(y|x) ~ exp(lam r(x, y)),
          the rate at which more pressure on r moves mass into the hacked mode. With two samples per
          prompt, (H_1 - H_2)(r_1 - r_2)/2 is unbiased for Cov(H, r | x). The pooled covariance over
          (x, y) (``drift_pooled``, ``monitor.hard_mass_drift_estimate``) adds Cov_x(E[H|x], E[r|x]),
          which can have either sign (hard prompts may score lower overall) and is not the drift.
Per-stratum means on hard and easy prompts are reported too (``true_hard``, ``hacked_easy``, ...).
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from murphyjax.align import codec as C
from murphyjax.align import core
from murphyjax.llm import SamplingConfig
from murphyjax.monitor import hard_mass_drift_estimate


def generate(graphdef, params, prompt_ids, prompt_mask, key, scfg: SamplingConfig, batch: int):
    """Samples for every prompt row, in fixed-size chunks (one compiled program); numpy Seqs + tokens."""
    ids, mask, cmask, toks, tmask = [], [], [], [], []
    for j, (k, (pi, pm)) in enumerate(core.padded_chunks([prompt_ids, prompt_mask], batch)):
        out = core.rollout(graphdef, params, pi, pm, jax.random.fold_in(key, j), scfg)
        seq = [np.asarray(x)[:k] for x in out.sequences()]
        ids.append(seq[0]), mask.append(seq[1]), cmask.append(seq[2])
        toks.append(np.asarray(out.tokens)[:k]), tmask.append(np.asarray(out.mask)[:k])
    cat = np.concatenate
    return C.Seqs(cat(ids), cat(mask), cat(cmask)), cat(toks), cat(tmask)


def proxy_scores(rm_graphdef, rm_params, seqs: C.Seqs, batch: int) -> np.ndarray:
    """Reward-model scores of sequences, in fixed-size chunks."""
    fn = functools.partial(core.reward_scores, rm_graphdef, rm_params)
    return core.batched(fn, [seqs.ids, seqs.mask], batch)


def kl_stats(graphdef, params, ref_params, seqs: C.Seqs, batch: int, temperature: float = 1.0,
             prompt_len: int | None = None) -> dict:
    """Per-sequence KL(q_T || pi_ref): exact, k1, k3, and entropy (``core.kl_to_reference``); with
    ``prompt_len`` the vocabulary-wide work runs on the completion slots only."""
    fn = functools.partial(core.kl_to_reference, graphdef, params, ref_params)
    return core.batched(lambda i, m, c: fn(i, m, c, temperature, prompt_len=prompt_len),
                        [seqs.ids, seqs.mask, seqs.cmask], batch)


def paired_drift(hacked, proxy) -> tuple[float, float]:
    """E_x Cov(H, r | x) and its standard error from two samples per prompt (rows 2i, 2i + 1)."""
    h = np.asarray(hacked, float).reshape(-1, 2)
    r = np.asarray(proxy, float).reshape(-1, 2)
    z = 0.5 * (h[:, 0] - h[:, 1]) * (r[:, 0] - r[:, 1])
    return float(z.mean()), float(z.std(ddof=1) / np.sqrt(len(z))) if len(z) > 1 else float("nan")


def paired_hard_variance(hacked) -> float:
    """E_x[a_x (1 - a_x)], a_x = P(H = 1 | x), from two samples per prompt: E[(H_1 - H_2)^2] / 2."""
    h = np.asarray(hacked, float).reshape(-1, 2)
    return float(np.mean(0.5 * (h[:, 0] - h[:, 1]) ** 2))


def summarize(proxy, true, hacked, hard, kl: dict | None = None, paired: bool = False) -> dict:
    """Means (overall and per stratum) and the hard-mass drift estimates from per-sample arrays.

    ``paired``: rows 2i and 2i + 1 are two samples of the same prompt (within-prompt drift).
    """
    proxy, true, hacked = (np.asarray(x, float) for x in (proxy, true, hacked))
    hard = np.asarray(hard, bool)
    out = {"proxy": proxy.mean(), "true": true.mean(), "hacked": hacked.mean(), "n": len(true)}
    for name, sel in (("hard", hard), ("easy", ~hard)):
        for k, v in (("true", true), ("hacked", hacked), ("proxy", proxy)):
            out[f"{k}_{name}"] = v[sel].mean() if sel.any() else float("nan")
    if len(true) >= 3:
        out["drift_pooled"], out["drift_pooled_se"] = hard_mass_drift_estimate(hacked, proxy)
    if paired and len(true) >= 4:
        out["drift"], out["drift_se"] = paired_drift(hacked, proxy)
    for k, v in (kl or {}).items():
        out[f"kl_{k}" if k != "entropy" else k] = float(np.mean(v))
    return {k: float(v) for k, v in out.items()}


class StateCache:
    """Prefilled prompt states of fixed models (the reference, a reward model) on fixed prompt sets, kept
    between evaluations: an evaluation along a run recomputes only the policy's. At most ``size``
    (params, prompts) entries; the params object is held, so an entry never outlives its weights."""

    def __init__(self, size: int = 4):
        self.size, self.entries = size, {}

    def get(self, graphdef, params, prompt_ids, prompt_mask, per: int, new_tokens: int) -> list:
        key = (id(params), id(prompt_ids), per, new_tokens)
        if key not in self.entries:
            if len(self.entries) >= self.size:
                self.entries.pop(next(iter(self.entries)))
            self.entries[key] = (params, prompt_ids, [core.prompt_states(graphdef, params, pi, pm, new_tokens)
                                                      for _, (pi, pm) in core.padded_chunks([prompt_ids, prompt_mask], per)])
        return self.entries[key][2]

    def trunk(self, graphdef, params, prompt_ids, prompt_mask, per: int, new_tokens: int, split: int) -> list:
        """Trunk states (``core.trunk_states``) of a prompt set, per chunk of ``per`` prompts."""
        key = (id(params), id(prompt_ids), per, new_tokens, "trunk", split)
        if key not in self.entries:
            if len(self.entries) >= self.size:
                self.entries.pop(next(iter(self.entries)))
            self.entries[key] = (params, prompt_ids, [core.trunk_states(graphdef, params, pi, pm, new_tokens, split)
                                                      for _, (pi, pm) in core.padded_chunks([prompt_ids, prompt_mask], per)])
        return self.entries[key][2]

    def top(self, graphdef, params, trunk: list, split: int) -> list:
        """A fixed model's upper-layer states (``core.top_states``) over the chunks of ``trunk``."""
        key = (id(params), id(trunk), "top", split)
        if key not in self.entries:
            if len(self.entries) >= self.size:
                self.entries.pop(next(iter(self.entries)))
            self.entries[key] = (params, trunk, [core.top_states(graphdef, params, t, split) for t in trunk])
        return self.entries[key][2]


def sample_scored(graphdef, params, prompt_ids, prompt_mask, key, scfg: SamplingConfig, *, samples: int, batch: int,
                  rm_graphdef=None, rm_params=None, ref_params=None, temperature: float = 1.0,
                  states: StateCache | None = None, share_trunk: bool = True) -> dict:
    """``samples`` completions of every prompt, scored in one pass: each prompt is prefilled once per model
    and every completion is decoded, scored by the reward model (``rm_params``) and compared with the
    reference (``ref_params``: exact / k1 / k3 KL and entropy) against those prompt states, never running the
    prompt again. Rows are prompt-major (sample j of prompt i at i * samples + j), ``batch`` rows per
    compiled call; chunk c draws from ``fold_in(key, c)``.

    Models that share a frozen trunk (``trainable_layers``; ``core.shared_trunk`` checks that the policy,
    the reference and the reward model hold the same lower layers) share its work as well: the trunk runs
    over each prompt once, the reference's and the reward model's upper layers score the completions from
    the trunk activations the policy's decode produced, and the policy's own predicting states (kept from
    the decode) give its side of the KL, with no second pass over the completion. The numbers are those
    of the full passes up to float round-off (``share_trunk=False`` runs the full passes).

    Returns numpy ``seqs`` (Seqs), ``tokens``, ``tmask``, and ``proxy`` / ``kl`` where asked for.
    """
    states = states or StateCache()
    per = max(1, batch // samples)
    n = scfg.max_new_tokens
    fixed = [p for p in (ref_params, None if rm_params is None else rm_params["lm"]) if p is not None]
    split = core.shared_trunk(graphdef, params, *fixed) if share_trunk and fixed and rm_graphdef in (None, graphdef) else 0
    if split:
        return _sample_scored_trunk(graphdef, params, prompt_ids, prompt_mask, key, scfg, samples, per, rm_params,
                                    ref_params, temperature, states, fixed[0], split)
    rm_st = states.get(rm_graphdef, rm_params["lm"], prompt_ids, prompt_mask, per, n) if rm_params is not None else None
    ref_st = states.get(graphdef, ref_params, prompt_ids, prompt_mask, per, n) if ref_params is not None else None

    def chunks():
        for c, (real, (pi, pm)) in enumerate(core.padded_chunks([prompt_ids, prompt_mask], per)):
            st = core.prompt_states(graphdef, params, pi, pm, n)
            smp = core.rollout_from(graphdef, params, st, jax.random.fold_in(key, c), scfg, samples)
            r = None if rm_st is None else core.completion_rewards(rm_graphdef, rm_params, rm_st[c], smp.tokens, smp.mask,
                                                                     samples)
            kl = None if ref_st is None else core.completion_kl(graphdef, params, ref_params, st, ref_st[c], smp.tokens,
                                                               smp.mask, temperature, samples)
            yield real * samples, smp, r, kl
    return _gathered(chunks())


def _gathered(chunks) -> dict:
    """``sample_scored``'s result from per-chunk (real rows, samples, proxy or None, kl or None), padding cut."""
    out = {"ids": [], "mask": [], "cmask": [], "tokens": [], "tmask": [], "proxy": [], "kl": []}
    for k, smp, r, kl in chunks:
        for name, x in zip(("ids", "mask", "cmask"), smp.sequences()):
            out[name].append(np.asarray(x)[:k])
        out["tokens"].append(np.asarray(smp.tokens)[:k]), out["tmask"].append(np.asarray(smp.mask)[:k])
        if r is not None:
            out["proxy"].append(np.asarray(r)[:k])
        if kl is not None:
            out["kl"].append({name: np.asarray(v)[:k] for name, v in kl.items()})
    cat = np.concatenate
    res = {"seqs": C.Seqs(cat(out["ids"]), cat(out["mask"]), cat(out["cmask"])), "tokens": cat(out["tokens"]),
           "tmask": cat(out["tmask"])}
    if out["proxy"]:
        res["proxy"] = cat(out["proxy"])
    if out["kl"]:
        res["kl"] = {name: cat([d[name] for d in out["kl"]]) for name in out["kl"][0]}
    return res


def _sample_scored_trunk(graphdef, params, prompt_ids, prompt_mask, key, scfg, samples, per, rm_params, ref_params,
                         temperature, states, trunk_params, split) -> dict:
    """``sample_scored`` on a shared trunk (its docstring)."""
    n = scfg.max_new_tokens
    trunk = states.trunk(graphdef, trunk_params, prompt_ids, prompt_mask, per, n, split)
    rm_top = states.top(graphdef, rm_params["lm"], trunk, split) if rm_params is not None else None
    ref_top = states.top(graphdef, ref_params, trunk, split) if ref_params is not None else None
    own = ref_top if params is ref_params else rm_top if rm_params is not None and params is rm_params["lm"] else None
    def chunks():
        for c, (real, _) in enumerate(core.padded_chunks([prompt_ids], per)):
            top = own[c] if own is not None else core.top_states(graphdef, params, trunk[c], split)
            smp, x, pred = core.rollout_split(graphdef, params, trunk[c], top, jax.random.fold_in(key, c), scfg, samples,
                                              split)
            r = None if rm_top is None else core.completion_rewards_top(graphdef, rm_params, rm_top[c], x, smp.tokens,
                                                                          smp.mask, samples, split)
            kl = None if ref_top is None else core.completion_kl_top(graphdef, params, ref_params, pred, ref_top[c], x,
                                                                       smp.tokens, smp.mask, temperature, samples, split)
            yield real * samples, smp, r, kl
    return _gathered(chunks())


def evaluate(graphdef, params, ref_params, prompts: dict, prompt_ids, prompt_mask, *, codec, score_texts,
             rm_graphdef, rm_params, key, max_new_tokens: int, temperature: float = 1.0, batch: int = 64,
             with_kl: bool = True, samples: int = 2, states: StateCache | None = None) -> tuple[dict, dict]:
    """Sample ``samples`` completions per prompt and measure everything; returns (summary, per-sample arrays).

    One fused pass (``sample_scored``): every prompt is prefilled once per model, the reference's and the
    reward model's prompt states come from ``states`` (kept between evaluations of the same models), and
    the completions are scored against them. ``score_texts(texts, index) -> (U, H)`` arrays from the
    task's exact scoring, ``index`` the prompt row of each text. Rows of the per-sample arrays are
    prompt-major (sample j of prompt i at i * samples + j).
    """
    scfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                          stop_tokens=tuple(codec.stop_ids), pad_id=codec.pad_id)
    index = np.repeat(np.arange(len(prompt_ids)), samples)
    res = sample_scored(graphdef, params, prompt_ids, prompt_mask, key, scfg, samples=samples, batch=batch,
                        rm_graphdef=rm_graphdef, rm_params=rm_params, ref_params=ref_params if with_kl else None,
                        temperature=temperature, states=states)
    texts = C.decode_completions(codec, res["tokens"], res["tmask"])
    U, H = score_texts(texts, index)
    r = res["proxy"]
    summary = summarize(r, U, H, np.asarray(prompts["hard"])[index], res.get("kl"), paired=samples == 2)
    summary["length"] = float(np.asarray(res["tmask"]).sum(1).mean())
    return summary, {"texts": texts, "proxy": r, "true": U, "hacked": H, "seqs": res["seqs"], "index": index}
