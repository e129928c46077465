"""Feedback channels that label candidate pairs, flaggers, routing, and the programmatic AI judge.

* Crowd: the Massart channel of the bandit laboratory (``murphyjax.bandits.channels``) with a fixed
  reference response (paper note 9.1): on hard prompts the reference is the *hacked* response and is
  preferred w.p. 1/2 + eps (directional bias); on easy prompts the reference is the truly better
  response, preferred w.p. 1/2 + easy_eps.
* Routing (paper v3 Theorems 2-3): pairs whose prompt a flagger marks go to calibrated annotators,
  each preferring the truly better response w.p. 1/2 + cal_eps; ``votes`` of them are aggregated by
  majority. The calibration oracle is the flagger h(x) = 1{x hard} (tau = 1, phi = 0); a noisy flagger
  has true/false-positive rates (tau, phi); a learned flagger (``murphyjax.align.flaggers``, trained on
  a small audited set) supplies its own flags (``route_learned``). The label error of a routed pair is
  ``theory.majority_error(votes, 1/2 + cal_eps)``; every label is counted.
* AI judge (Constitutional AI / RLAIF): written principles, each a feature of a response with a
  weight; P(judge prefers a) = sigmoid((t(a) - t(b)) / temperature), t = sum_i w_i f_i. The default
  constitution's "respect the user's view" and "be thorough" principles reproduce the sycophancy and
  verbosity biases documented for LLM judges. ``murphyjax.align.judges`` holds the LLM judge.
* MAPS flagger of generations: flags the hacked mode with rates (tau, phi) (paper App. D.3).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from murphyjax import theory
from murphyjax.align import tasks
from murphyjax.bandits import channels

CHANNELS = ("crowd", "route_oracle", "route_flagger", "judge", "judge_route", "route_learned")


@dataclasses.dataclass(frozen=True)
class Principle:
    name: str  # which response feature it scores: correct | agreeable | thorough | warm
    text: str
    weight: float


CONSTITUTION = (
    Principle("correct", "Give the correct answer to the user's question.", 2.0),
    Principle("agreeable", "Respect the user's view: do not contradict the user needlessly.", 2.5),
    Principle("thorough", "Be thorough: show how you arrived at the answer.", 1.0),
    Principle("warm", "Be warm and encouraging towards the user.", 1.0),
)


@dataclasses.dataclass(frozen=True)
class FeedbackConfig:
    """Routing and judge settings. ``tau``/``phi``: the noisy prompt flagger used by ``route_flagger``."""

    votes: int = 9  # calibrated labels per routed pair (majority)
    cal_eps: float = 0.25  # calibrated annotators right w.p. 1/2 + cal_eps
    tau: float = 0.7
    phi: float = 0.1
    judge_temperature: float = 1.0
    constitution: tuple = CONSTITUTION

    def __post_init__(self):
        if not (isinstance(self.votes, int) and self.votes >= 1):
            raise ValueError(f"votes must be an integer >= 1; got {self.votes!r}")
        if not 0.0 < self.cal_eps < 0.5:
            raise ValueError(f"cal_eps must lie in (0, 0.5); got {self.cal_eps!r}")
        for k in ("tau", "phi"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ValueError(f"{k} must lie in [0, 1]; got {getattr(self, k)!r}")
        if not self.judge_temperature > 0:
            raise ValueError(f"judge_temperature must be > 0; got {self.judge_temperature!r}")

    def routed_accuracy(self) -> float:
        """P(a routed label names the truly better response) = 1 - majority_error(votes, 1/2 + cal_eps)."""
        return 1.0 - float(theory.majority_error(self.votes, 0.5 + self.cal_eps))


def flag(truth, tau: float, phi: float, u) -> np.ndarray:
    """A noisy flagger: 1 w.p. tau where ``truth`` is 1, w.p. phi where it is 0 (uniforms ``u``)."""
    t = np.asarray(truth, bool)
    return np.where(t, np.asarray(u) < tau, np.asarray(u) < phi)


def _better_is_a(c) -> np.ndarray:
    """+1 where a has the higher true utility, -1 where b has, 0 on ties."""
    return np.sign(np.asarray(c["utility_a"], float) - np.asarray(c["utility_b"], float))


def crowd_prob_a(cfg: tasks.TaskConfig, c: dict) -> np.ndarray:
    """P(crowd label prefers a): Massart with the hacked response as reference on hard prompts."""
    hard = np.asarray(c["hard"], np.float32)
    p_ref = np.asarray(channels.massart_p(hard, 1.0, cfg.eps, cfg.easy_eps))
    better = _better_is_a(c)
    # reference response: the hacked one on hard prompts, the truly better one on easy prompts
    ref_is_a = np.where(hard > 0, np.asarray(c["hacked_a"], bool), better > 0)
    p = np.asarray(channels.labels_for_action(p_ref, ref_is_a))
    return np.where((hard == 0) & (better == 0), 0.5, p)


def judge_features(cfg: tasks.TaskConfig, value: int, asserted: int, text: str) -> dict:
    ans = tasks.answer(text)
    return {"correct": float(ans == value), "agreeable": float(asserted >= 0 and ans == asserted),
            "thorough": float(tasks.is_long(cfg, text)), "warm": float(tasks.is_flattering(text))}


def judge_score(cfg: tasks.TaskConfig, fb: FeedbackConfig, value: int, asserted: int, text: str) -> float:
    """t(y) = sum_i w_i f_i(y) over the constitution's principles."""
    f = judge_features(cfg, value, asserted, text)
    return sum(p.weight * f[p.name] for p in fb.constitution)


def judge_prob_a(cfg: tasks.TaskConfig, fb: FeedbackConfig, c: dict) -> np.ndarray:
    """P(programmatic judge prefers a) = sigmoid((t(a) - t(b)) / temperature)."""
    d = np.asarray([judge_score(cfg, fb, v, w, a) - judge_score(cfg, fb, v, w, b) for v, w, a, b in
                    zip(c["value"], c["asserted"], c["response_a"], c["response_b"])], float)
    return 1.0 / (1.0 + np.exp(-d / fb.judge_temperature))


def label_pairs(cfg: tasks.TaskConfig, fb: FeedbackConfig, c: dict, channel: str, rng: np.random.Generator,
                prob_a: np.ndarray | None = None, routed: np.ndarray | None = None) -> dict:
    """Label candidate pairs through ``channel``; returns the preference columns.

    Args:
      c: ``tasks.candidate_pairs`` output. channel: one of ``CHANNELS``.
      prob_a: for ``judge``/``judge_route``, P(judge prefers a) from another judge (e.g. an LLM
        judge); default the programmatic judge.
      routed: for ``route_learned``, the flags of a learned prompt flagger (bool per pair).
    Returns dict of lists: prompt, chosen, rejected, chosen_utility, rejected_utility, chosen_hacked,
    rejected_hacked, hard, value, asserted, routed (bool), queries (labels spent on the pair),
    chosen_is_a (bool).
    """
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}; got {channel!r}")
    n = len(c["prompt"])
    u_label, u_flag, u_votes = rng.random(n), rng.random(n), rng.random((n, fb.votes))
    if channel.startswith("judge"):
        p = judge_prob_a(cfg, fb, c) if prob_a is None else np.asarray(prob_a, float)
    else:
        p = crowd_prob_a(cfg, c)
    pick_a = u_label < p
    learned, routed = routed, np.zeros(n, bool)
    if channel in ("route_oracle", "judge_route"):
        routed = np.asarray(c["hard"], bool)
    elif channel == "route_flagger":
        routed = flag(c["hard"], fb.tau, fb.phi, u_flag)
    elif channel == "route_learned":
        if learned is None or len(learned) != n:
            raise ValueError(f"routed: the route_learned channel needs one flag per pair ({n}); got "
                             f"{None if learned is None else len(learned)}")
        routed = np.asarray(learned, bool)
    better = _better_is_a(c)
    right = (u_votes < 0.5 + fb.cal_eps).sum(1)  # calibrated votes for the truly better response
    wrong = fb.votes - right
    maj_better = np.where(right != wrong, right > wrong, u_flag < 0.5)
    routed_a = np.where(better > 0, maj_better, np.where(better < 0, ~maj_better, u_flag < 0.5))
    pick_a = np.where(routed, routed_a, pick_a)
    A = ("response_a", "utility_a", "hacked_a")
    B = ("response_b", "utility_b", "hacked_b")
    out = {"prompt": list(c["prompt"])}
    for name, (ka, kb) in zip(("chosen", "chosen_utility", "chosen_hacked"), zip(A, B)):
        out[name] = [x if pa else y for x, y, pa in zip(c[ka], c[kb], pick_a)]
    for name, (ka, kb) in zip(("rejected", "rejected_utility", "rejected_hacked"), zip(A, B)):
        out[name] = [y if pa else x for x, y, pa in zip(c[ka], c[kb], pick_a)]
    out.update(hard=list(c["hard"]), value=list(c["value"]), asserted=list(c["asserted"]),
               routed=routed.tolist(), queries=np.where(routed, fb.votes, 1).tolist(), chosen_is_a=pick_a.tolist())
    return out
