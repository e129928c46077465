"""One run of each alignment method, evaluated along its pressure axis.

A run is (method, variant, seed): the variant picks the feedback channel (``base``/``maps``: the
crowd, or the AI judge for ``cai``; ``route``: hard-prompt queries routed to calibrated annotators by
the oracle flagger; ``flag``: by the noisy (tau, phi) flagger) and whether the MAPS penalty
beta * h_hat(x, y) (a noisy flagger of hacked generations, beta = D.3's beta*) shapes the proxy.
The proxy reported for a run is the reward model learned from the labels the run consumed; its
step-0 point is the reference policy (the same evaluation, shared by every run of that channel).

    rec = run(ctx, "dpo")       # {"curve": [...], "pressure": "steps", "finals": {...}, "events": [...]}
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from murphyjax import theory
from murphyjax.experiments.llm import shared
from murphyjax.align import codec as C
from murphyjax.align import core, feedback, loops, preference, rl, search, tasks
from murphyjax.monitor import OnsetMonitor
from murphyjax.train import OptimizerConfig

VALID = {"sft": ("base", "maps", "maps_learned", "route"),
         "ppo": ("base", "maps", "maps_learned", "route", "flag", "learned"),
         "grpo": ("base", "maps", "maps_learned", "route", "learned"),
         "dpo": ("base", "maps", "maps_learned", "route", "flag", "learned"), "ipo": ("base",), "fdpo": ("base",),
         "cai": ("base", "maps", "maps_learned", "route"), "rest": ("base", "maps", "maps_learned", "route"),
         "bon": ("base", "maps", "maps_learned", "route", "flag", "learned")}


SHIFT_FINALS = ("sft", "ppo", "grpo", "dpo", "ipo", "fdpo", "cai", "rest")  # final policy also on shifted prompts
TEMPERATURE_FINALS = ("ppo", "dpo")  # ... and at other sampling temperatures


def channel_for(method: str, variant: str) -> str:
    if method == "cai":
        return {"base": "judge", "maps": "judge", "maps_learned": "judge", "route": "judge_route"}[variant]
    return {"base": "crowd", "maps": "crowd", "maps_learned": "crowd", "route": "route_oracle",
            "flag": "route_flagger", "learned": "route_learned"}[variant]


def eval_points(total: int, k: int) -> list[int]:
    """k evaluation steps spread over (0, total] (step 0 is the reference, evaluated once per channel)."""
    return sorted({max(1, round(total * i / k)) for i in range(1, k + 1)}) if total else []


@dataclasses.dataclass
class Ctx:
    cfg: object
    setup: shared.Setup
    method: str
    variant: str
    seed: int
    rm: object
    rm_rec: dict
    labels: dict
    log: object = print
    kl_coef: float | None = None  # sweeps
    beta: float | None = None
    seconds: dict = dataclasses.field(default_factory=dict)  # wall time per phase

    @property
    def maps_beta(self) -> float:
        """The MAPS penalty: cfg.maps_beta, else D.3's beta* at the flagger's (tau, phi) (the simulated
        flagger's nominal rates for ``maps``, the learned flagger's measured ones for ``maps_learned``)."""
        if self.variant not in ("maps", "maps_learned"):
            return 0.0
        if self.cfg.maps_beta >= 0:
            b = self.cfg.maps_beta
        elif self.variant == "maps":
            b = self.rm_rec["beta_star"]
        else:
            rf = shared.response_flagger(self.cfg, self.setup, self.seed)
            a = self.rm_rec["alpha_eff"]
            b = float(theory.flagger_beta_star(self.rm_rec["cov_H_r"], a, rf["tau"], rf["phi"])) \
                if 0 < a < 1 and rf["tau"] > rf["phi"] else float("nan")
        return float(b) if np.isfinite(b) else 0.0

    def rng(self, *stream) -> np.random.Generator:
        m = list(VALID).index(self.method)
        return np.random.default_rng([self.cfg.seed, shared.TASK_STREAM[self.setup.kind], 9, self.seed, m, *stream])

    def ev(self, params, **kw) -> dict:
        t0 = time.time()
        out = shared.evaluate_policy(self.cfg, self.setup, params, self.rm, self.seed, **kw)[0]
        phase = "evaluate" if not kw else "finals"  # finals: other temperatures, shifted prompts
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.time() - t0
        return out

    def flags(self, hacked, rng, seqs=None) -> np.ndarray:
        """MAPS flags of responses: the learned probe on ``seqs`` (``maps_learned``), else the simulated
        (maps_tau, maps_phi) flagger of the true hacked flags (uniforms drawn either way: the same streams)."""
        u = rng.random(len(hacked))
        if self.variant == "maps_learned":
            return shared.flag_responses(self.cfg, self.setup, self.seed, seqs)
        return feedback.flag(hacked, self.cfg.maps_tau, self.cfg.maps_phi, u)


def truncated(ids, cmask, stop_ids) -> np.ndarray:
    """Rows whose completion contains no stop token (cut at the length limit)."""
    return ~(np.isin(np.asarray(ids), np.asarray(stop_ids)) & np.asarray(cmask, bool)).any(1)


def _keys(ctx: Ctx, r, H, seqs, *stream) -> np.ndarray:
    """Selection key of the proxy-driven methods: r - missing_eos_penalty 1{truncated} (- MAPS penalty)."""
    k = r - ctx.cfg.missing_eos_penalty * truncated(seqs.ids, seqs.cmask, ctx.setup.codec.stop_ids)
    return k - ctx.maps_beta * ctx.flags(H, ctx.rng(*stream), seqs) if ctx.maps_beta > 0 else k


def _monitor(ctx: Ctx):
    mon = OnsetMonitor(window=3, patience=2)
    ref = ctx.rm_rec["ref"]
    mon.update(0, proxy=ref["proxy"], true_utility=ref["true"])
    return mon


def _curve(ctx: Ctx, hist: list[dict]) -> list[dict]:
    return [{"pressure": 0, **ctx.rm_rec["ref"]}] + [{"pressure": h["step"], **h} for h in hist]


def _finals(ctx: Ctx, params) -> dict:
    """The final policy at other sampling temperatures and on shifted prompts (base variant only)."""
    if ctx.variant != "base" or ctx.kl_coef is not None or ctx.beta is not None or ctx.method not in SHIFT_FINALS:
        return {}
    temps = {str(T): ctx.ev(params, temperature=T) for T in ctx.cfg.temperatures if T != 1.0} \
        if ctx.method in TEMPERATURE_FINALS else {}
    shift = {str(r): ctx.ev(params, prompts=p) for r, p in ctx.setup.shift.items()}
    return {"temperature": temps, "shift": shift}


# --------------------------------------------------------------------------- offline methods
def run_sft(ctx: Ctx) -> dict:
    cfg, s, lb = ctx.cfg, ctx.setup, ctx.labels
    keep = np.ones(len(lb["chosen"]), bool)
    if ctx.maps_beta > 0:  # MAPS for SFT: keep a flagged demonstration w.p. exp(-beta) (weight exp(-beta h_hat))
        r = ctx.rng(1)
        full = C.encode_sequences(s.codec, lb["prompt"], lb["chosen"], s.P, s.N) if ctx.variant == "maps_learned" else None
        keep = ~ctx.flags(lb["chosen_hacked"], r, full) | (r.random(len(keep)) < np.exp(-ctx.maps_beta))
    idx = np.flatnonzero(keep)
    seqs = C.encode_sequences(s.codec, [lb["prompt"][i] for i in idx], [lb["chosen"][i] for i in idx], s.P, s.N)
    mon = _monitor(ctx)
    params, hist = loops.train_sft(s.graphdef, s.ref, seqs, steps=cfg.sft_steps, batch_size=cfg.pref_batch,
                                   opt=OptimizerConfig(learning_rate=cfg.sft_lr), seed=ctx.seed,
                                   eval_at=eval_points(cfg.sft_steps, cfg.eval_points),
                                   on_eval=lambda t, p: ctx.ev(p), monitor=mon, log=ctx.log)
    return {"pressure": "steps", "curve": _curve(ctx, hist), "finals": _finals(ctx, params), "event": mon.event,
            "kept": int(keep.sum())}


def _candidate_logps(s: shared.Setup):
    """Reference log-probs of both candidate responses of every pair (once per task)."""
    if getattr(s, "_cand_cache", None) is None:
        c = s.cands
        A = C.encode_sequences(s.codec, c["prompt"], c["response_a"], s.P, s.N)
        B = C.encode_sequences(s.codec, c["prompt"], c["response_b"], s.P, s.N)
        bs = 128 if len(A.ids) >= 128 else len(A.ids)
        s._cand_cache = (A, B, preference.reference_logps(s.graphdef, s.ref, A, bs),
                         preference.reference_logps(s.graphdef, s.ref, B, bs))
    return s._cand_cache


def run_preference(ctx: Ctx) -> dict:
    cfg, s, lb = ctx.cfg, ctx.setup, ctx.labels
    A, B, la, lbb = _candidate_logps(s)
    a = np.asarray(lb["chosen_is_a"], bool)
    pick = lambda x, y: np.where(a[:, None] if x.ndim == 2 else a, x, y)  # noqa: E731
    chosen = C.Seqs(*(pick(x, y) for x, y in zip(A, B)))
    rejected = C.Seqs(*(pick(y, x) for x, y in zip(A, B)))
    kind = {"dpo": "dpo", "cai": "dpo", "ipo": "ipo", "fdpo": "fdpo"}[ctx.method]
    loss = preference.PreferenceLoss(kind, divergence=cfg.fdpo_divergence)
    beta = ctx.beta if ctx.beta is not None else (cfg.ipo_tau if kind == "ipo" else cfg.dpo_beta)
    margin = None
    if ctx.maps_beta > 0:  # MAPS for DPO: the shaped reward r - beta h_hat is a per-pair margin
        r = ctx.rng(2)
        margin = ctx.maps_beta * (ctx.flags(lb["rejected_hacked"], r, rejected).astype(np.float32)
                                  - ctx.flags(lb["chosen_hacked"], r, chosen).astype(np.float32))
    mon = _monitor(ctx)
    pts = eval_points(cfg.pref_steps, cfg.eval_points) if ctx.beta is None else [cfg.pref_steps]
    params, hist = loops.train_preference(s.graphdef, s.ref, pick(la, lbb), pick(lbb, la), chosen, rejected,
                                          loss=loss, beta=beta, steps=cfg.pref_steps, batch_size=cfg.pref_batch,
                                          opt=OptimizerConfig(learning_rate=cfg.pref_lr), seed=ctx.seed,
                                          margin=margin, eval_at=pts, on_eval=lambda t, p: ctx.ev(p), monitor=mon,
                                          log=ctx.log, prompt_len=s.P)
    return {"pressure": "steps", "curve": _curve(ctx, hist), "finals": _finals(ctx, params), "event": mon.event,
            "beta": beta}


# --------------------------------------------------------------------------- RL
def _reward_fn(ctx: Ctx, rows: np.ndarray, it: int):
    s = ctx.setup

    def reward(samples, index):
        seqs = C.Seqs(*(np.asarray(x) for x in samples.sequences()))
        r = np.asarray(core.reward_scores(s.graphdef, ctx.rm, seqs.ids, seqs.mask))
        H = np.zeros(len(r), np.float32)
        if ctx.maps_beta > 0 and ctx.variant == "maps":
            texts = C.decode_completions(s.codec, samples.tokens, samples.mask)
            _, H, _ = tasks.score_batch(s.task, s.train, texts, rows[index])
        return _keys(ctx, r, H, seqs, 3, it)
    return reward


def run_rl(ctx: Ctx) -> dict:
    cfg, s = ctx.cfg, ctx.setup
    rcfg = rl.RLConfig(algo=ctx.method, group_size=cfg.group_size)
    opt = OptimizerConfig(learning_rate=cfg.rl_lr)
    state = rl.rl_state(s.ref, rcfg, opt, s.d_model, ctx.seed)
    kl = np.float32(ctx.kl_coef if ctx.kl_coef is not None else cfg.kl_coef)
    prompts = cfg.rl_prompts if ctx.method == "ppo" else max(1, cfg.rl_prompts // cfg.group_size)
    pts = set(eval_points(cfg.rl_iters, cfg.eval_points) if ctx.kl_coef is None else [cfg.rl_iters])
    mon, hist, rng = _monitor(ctx), [], ctx.rng(4)
    key = jax.random.key(cfg.seed * 7919 + ctx.seed)
    for it in range(cfg.rl_iters):
        rows = rng.choice(len(s.train["ids"]), prompts, replace=False)
        state, m, _ = rl.rl_iteration(state, s.ref, s.train["ids"][rows], s.train["mask"][rows], _reward_fn(ctx, rows, it),
                                      jax.random.fold_in(key, it), kl, graphdef=s.graphdef, cfg=rcfg, opt=opt,
                                      max_new_tokens=s.N, stop_ids=s.codec.stop_ids, pad_id=s.codec.pad_id)
        if it + 1 in pts:
            rec = {"step": it + 1, **{f"train/{k}": v for k, v in m.items()}, **ctx.ev(state.params["lm"])}
            ev = mon.update(it + 1, proxy=rec["proxy"], true_utility=rec["true"])
            if ev:
                ctx.log(f"  onset event: {ev}")
            hist.append(rec)
    return {"pressure": "iterations", "curve": _curve(ctx, hist), "finals": _finals(ctx, state.params["lm"]),
            "event": mon.event, "kl_coef": float(kl), "kl_in": "reward" if ctx.method == "ppo" else "loss",
            "kl_estimator": rcfg.estimator}


# --------------------------------------------------------------------------- best-of-n and ReST
def _sample_scored(ctx: Ctx, params, prompts: dict, k: int, key, rows=None):
    """k samples per prompt row, scored in one fused pass: (Seqs, texts, index, U, H, proxy r)."""
    from murphyjax.align import evaluate
    from murphyjax.llm import SamplingConfig

    s = ctx.setup
    # the whole prompt set: the reward model's prompt states are kept (keyed by the prompt arrays themselves)
    ids, mask = (prompts["ids"], prompts["mask"]) if rows is None else (prompts["ids"][rows], prompts["mask"][rows])
    states = shared.prompt_state_cache(s) if rows is None else None
    rows = np.arange(len(prompts["ids"])) if rows is None else rows
    index = np.repeat(rows, k)
    scfg = SamplingConfig(max_new_tokens=s.N, stop_tokens=tuple(s.codec.stop_ids), pad_id=s.codec.pad_id)
    res = evaluate.sample_scored(s.graphdef, params, ids, mask, key, scfg, samples=k,
                                 batch=shared.EVAL_BATCH[ctx.cfg.model], rm_graphdef=s.graphdef, rm_params=ctx.rm,
                                 states=states)
    texts = C.decode_completions(s.codec, res["tokens"], res["tmask"])
    U, H, _ = tasks.score_batch(s.task, prompts, texts, index)
    return res["seqs"], texts, index, U, H, res["proxy"]


def run_bon(ctx: Ctx) -> dict:
    cfg, s = ctx.cfg, ctx.setup
    cache = s.__dict__.setdefault("_bon_cache", {})
    if ctx.seed not in cache:  # the reference's samples, shared by every variant of this seed
        cache[ctx.seed] = (ctx.rm, _sample_scored(ctx, s.ref, s.eval, cfg.bon_samples,
                                                  jax.random.fold_in(shared.eval_key(cfg, ctx.seed), 17)))
    scored_by, (seqs, _, _, U, H, r) = cache[ctx.seed]
    if scored_by is not ctx.rm:  # another variant's reward model: score the same samples again
        from murphyjax.align import evaluate

        r = evaluate.proxy_scores(s.graphdef, ctx.rm, seqs, shared.EVAL_BATCH[cfg.model])
    keys = _keys(ctx, r, H, seqs, 5)
    M, N = len(s.eval["ids"]), cfg.bon_samples
    ns = [2**i for i in range(int(np.log2(N)) + 1)]
    # per stratum: the best-of-n estimate is linear in the values, so the mean over hard prompts is the
    # mean of (value x 1{hard}) over all prompts divided by the hard share
    h = np.asarray(s.eval["hard"], float)[:, None]
    U2, H2 = U.reshape(M, N), H.reshape(M, N)
    cur = search.bon_curve(keys.reshape(M, N), {"proxy": r.reshape(M, N), "true": U2, "hacked": H2,
                                                "true_hard": U2 * h, "true_easy": U2 * (1 - h), "hacked_hard": H2 * h,
                                                "hacked_easy": H2 * (1 - h)}, ns, ctx.rng(6))
    share = {"hard": float(h.mean()), "easy": float(1 - h.mean())}
    curve = [{"pressure": int(n), "proxy": cur["proxy"][i], "true": cur["true"][i], "hacked": cur["hacked"][i],
              "kl_exact": cur["kl_exact"][i], "kl_bound": cur["kl_bound"][i],
              **{f"{q}_{st}": cur[f"{q}_{st}"][i] / share[st] if share[st] > 0 else float("nan")
                 for q in ("true", "hacked") for st in ("hard", "easy")}} for i, n in enumerate(ns)]
    return {"pressure": "n", "curve": curve, "finals": {}, "event": None}


def run_rest(ctx: Ctx) -> dict:
    cfg, s = ctx.cfg, ctx.setup
    params, hist, mon = s.ref, [], _monitor(ctx)
    for g in range(cfg.rest_iters):
        seqs, _, _, _, H, r = _sample_scored(ctx, params, s.train, cfg.rest_samples,
                                             jax.random.key(cfg.seed * 104729 + ctx.seed * 31 + g))
        keys = _keys(ctx, r, H, seqs, 7, g)
        kept = search.rest_select(keys, cfg.rest_keep)
        sub = C.Seqs(*(x[kept] for x in seqs))
        params, _ = loops.train_sft(s.graphdef, params, sub, steps=cfg.rest_steps, batch_size=min(cfg.pref_batch, len(kept)),
                                    opt=OptimizerConfig(learning_rate=cfg.rest_lr), seed=ctx.seed * 100 + g)
        rec = {"step": g + 1, "train/kept": int(len(kept)), "train/kept_hacked": float(H[kept].mean()), **ctx.ev(params)}
        mon.update(g + 1, proxy=rec["proxy"], true_utility=rec["true"])
        hist.append(rec)
    return {"pressure": "iterations", "curve": _curve(ctx, hist), "finals": _finals(ctx, params), "event": mon.event}


RUNNERS = {"sft": run_sft, "dpo": run_preference, "ipo": run_preference, "fdpo": run_preference, "cai": run_preference,
           "ppo": run_rl, "grpo": run_rl, "bon": run_bon, "rest": run_rest}


def run(ctx: Ctx) -> dict:
    t0 = time.time()
    rec = RUNNERS[ctx.method](ctx)
    rec.update(task=ctx.setup.kind, method=ctx.method, variant=ctx.variant, seed=ctx.seed,
               channel=channel_for(ctx.method, ctx.variant), maps_beta=ctx.maps_beta,
               sweep={"kl_coef": ctx.kl_coef, "beta": ctx.beta}, seconds=time.time() - t0)
    rec["phase_seconds"] = {**ctx.seconds, "train": rec["seconds"] - sum(ctx.seconds.values())}
    if ctx.variant == "maps_learned":
        rf = shared.response_flagger(ctx.cfg, ctx.setup, ctx.seed)
        rec.update(maps_flagger_tau=rf["tau"], maps_flagger_phi=rf["phi"], maps_flagger_audit_pairs=rf["audit_pairs"])
    return rec
