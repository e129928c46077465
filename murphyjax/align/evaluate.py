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
    n = len(prompt_ids)
    ids, mask, cmask, toks, tmask = [], [], [], [], []
    for j, s in enumerate(range(0, n, batch)):
        pi, pm = prompt_ids[s:s + batch], prompt_mask[s:s + batch]
        k = len(pi)
        if k < batch:
            pi = np.concatenate([pi, np.repeat(pi[-1:], batch - k, 0)])
            pm = np.concatenate([pm, np.repeat(pm[-1:], batch - k, 0)])
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


def evaluate(graphdef, params, ref_params, prompts: dict, prompt_ids, prompt_mask, *, codec, score_texts,
             rm_graphdef, rm_params, key, max_new_tokens: int, temperature: float = 1.0, batch: int = 64,
             with_kl: bool = True, samples: int = 2) -> tuple[dict, dict]:
    """Sample ``samples`` completions per prompt and measure everything; returns (summary, per-sample arrays).

    ``score_texts(texts, index) -> (U, H)`` arrays from the task's exact scoring, ``index`` the prompt
    row of each text. Rows of the per-sample arrays are prompt-major (sample j of prompt i at i * samples + j).
    """
    scfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                          stop_tokens=tuple(codec.stop_ids), pad_id=codec.pad_id)
    index = np.repeat(np.arange(len(prompt_ids)), samples)
    seqs, toks, tmask = generate(graphdef, params, prompt_ids[index], prompt_mask[index], key, scfg, batch)
    texts = C.decode_completions(codec, toks, tmask)
    U, H = score_texts(texts, index)
    r = proxy_scores(rm_graphdef, rm_params, seqs, batch)
    kl = kl_stats(graphdef, params, ref_params, seqs, batch, temperature, prompt_len=prompt_ids.shape[1]) \
        if with_kl else None
    summary = summarize(r, U, H, np.asarray(prompts["hard"])[index], kl, paired=samples == 2)
    summary["length"] = float(np.asarray(tmask).sum(1).mean())
    return summary, {"texts": texts, "proxy": r, "true": U, "hacked": H, "seqs": seqs, "index": index}
