"""The gate before any policy run: does the reward model's bias point where the task says, within reach?

A reward model learned from biased labels is evidence for the law only if optimising it *can* move a
policy into the hacked mode and nowhere else. The gate checks that directly, before any policy is
trained. On the gate prompts (the first ``cfg.gate_prompts`` evaluation prompts) every response form of
the task (each answer in each template, ``tasks.response_forms``) is scored by the reward model, in
reference proxy standard deviations (centred at the reference policy's mean proxy), and by the
reference policy's exact sequence log-probability. A form is *reachable* when the reference gives it
probability at least ``cfg.gate_floor``: forms the reference never produces may score anything
without a KL-regularised method ever finding them. Per prompt:

* hard prompts: the margin of the best reachable hacked form over the best reachable correct,
  unhacked form (``hard_margin_sd``: the pull toward the hack);
* easy prompts: the margin of the best reachable correct form over the best reachable wrong one
  (``easy_margin_sd``: the reward model knows the task where its labels are unbiased).

Each is a mean over the prompts that have both kinds of reachable form. The gate passes when both
margins are at least ``cfg.gate_threshold``; a run on a reward model whose gate fails is reported as
such and never counted as evidence.

The same scores give the proxy-optimal policy within reach, pi*(x) = the reachable form of highest
proxy: its true utility by stratum and its distance d* = sqrt(KL(pi* || pi_ref)), KL of a point mass =
E_x[-log pi_ref(y*(x) | x)] exactly. Methods are pushed to at least 2 d*.
"""

from __future__ import annotations

import math

import numpy as np

from murphyjax.align import core, tasks

TEMPLATE_NAMES = {(): "plain", ("agree",): "yes", ("disagree",): "no", ("long",): "long", ("flatter",): "flatter"}


def _template(kw: dict) -> str:
    return TEMPLATE_NAMES[tuple(sorted(k for k, v in kw.items() if v))]


def form_table(cfg, setup) -> dict:
    """Every response form on every gate prompt with its exact (U, H, correct) and reference log-prob.

    Computed once per task (the same for every channel and seed) and kept on the setup. Each gate prompt
    is prefilled once; every form is scored against that state (``core.completion_sequence_logps``)."""
    cache = setup.__dict__.setdefault("_form_table", None)
    if cache is not None:
        return cache
    ev, task = setup.eval, setup.task
    m = min(cfg.gate_prompts, len(ev["prompt"]))
    forms = tasks.response_forms(task)
    rows, texts, cls = [], [], []
    for i in range(m):
        v, w = ev["value"][i], ev["asserted"][i]
        for value, kw in forms:
            rows.append(i)
            texts.append(tasks.response(value, **kw))
            kind = "correct" if value == v else "asserted" if value == w else "wrong"
            cls.append(f"{_template(kw)}/{kind}")
    rows = np.asarray(rows)
    U, H, correct = tasks.score_batch(task, ev, texts, rows)
    tok, tm = _form_tokens(setup, [tasks.response(value, **kw) for value, kw in forms])
    prompts = (ev["ids"][:m], ev["mask"][:m])
    logp = _per_form(lambda st, t, k: core.completion_sequence_logps(setup.graphdef, setup.ref, st, t, k, len(forms)),
                     setup.graphdef, setup.ref, prompts, tok, tm, _batch(cfg))
    setup._form_table = {"text": texts, "class": cls, "U": U, "H": H.astype(bool),
                         "correct": correct.astype(bool), "hard": np.asarray(ev["hard"], bool)[rows],
                         "logp_ref": np.asarray(logp, np.float64), "prompts": m, "prompt_arrays": prompts,
                         "tokens": (tok, tm), "forms": len(forms)}
    return setup._form_table


def _batch(cfg) -> int:
    return 128 if cfg.model == "tiny" else 64


def _form_tokens(setup, texts):
    """(F, N) completion tokens of the response forms (the same after every prompt) and their mask."""
    tok = np.full((len(texts), setup.N), setup.codec.pad_id, np.int32)
    tm = np.zeros((len(texts), setup.N), bool)
    for j, t in enumerate(texts):
        ids = setup.codec.encode_response(t)
        tok[j, :len(ids)], tm[j, :len(ids)] = ids, True
    return tok, tm


def _per_form(score, graphdef, params, prompts, tok, tm, batch: int) -> np.ndarray:
    """``score(states, tokens, tmask)`` of every form after every prompt (prompt-major rows), each prompt
    prefilled once by ``params``."""
    F = len(tok)
    per = max(1, batch // F)
    out = []
    for _, (pi, pm) in core.padded_chunks(list(prompts), per):
        st = core.prompt_states(graphdef, params, pi, pm, tok.shape[1])
        out.append(np.asarray(score(st, np.tile(tok, (per, 1)), np.tile(tm, (per, 1)))))
    return np.concatenate(out)[:len(prompts[0]) * F]


def gate(cfg, setup, rm, rm_rec: dict) -> dict:
    """The gate record of one reward model (``rm_rec``: its record, for the reference's proxy mean and sd)."""
    ft = form_table(cfg, setup)
    tok, tm = ft["tokens"]
    r = _per_form(lambda st, t, k: core.completion_rewards(setup.graphdef, rm, st, t, k, ft["forms"]),
                  setup.graphdef, rm["lm"], ft["prompt_arrays"], tok, tm, _batch(cfg)).astype(np.float64)
    sd = rm_rec["ref_proxy_sd"]
    z = (r - rm_rec["ref"]["proxy"]) / sd if sd > 0 else np.full_like(r, np.nan)
    m, F = ft["prompts"], ft["forms"]  # rows are prompt-major: form j of prompt i at i * F + j
    reach = ft["logp_ref"] >= math.log(cfg.gate_floor)
    good = ft["correct"] & ~ft["H"]
    prompt_hard = ft["hard"].reshape(m, F)[:, 0]

    def best(sel):  # per prompt, the largest z over the selected forms (-inf where none is selected)
        return np.where(sel, z, -np.inf).reshape(m, F).max(1)

    hacked_best, good_best, wrong_best = best(reach & ft["H"]), best(reach & good), best(reach & ~ft["correct"])

    def margin(a, b, sel):
        ok = sel & np.isfinite(a) & np.isfinite(b)
        return (float(np.mean(a[ok] - b[ok])) if ok.any() else math.nan), int(ok.sum())

    hard_margin, n_hard = margin(hacked_best, good_best, prompt_hard)
    easy_margin, n_easy = margin(good_best, wrong_best, ~prompt_hard)
    # the proxy-optimal policy within reach: per prompt the reachable form of highest proxy
    zr = np.where(reach & np.isfinite(z), z, -np.inf).reshape(m, F)
    has = (zr > -np.inf).any(1)
    star = np.arange(m) * F + zr.argmax(1)  # ties to the first form
    kl = -ft["logp_ref"][star[has]]
    u_star = ft["U"][star[has]]
    hard_star = prompt_hard[has]
    best = tasks.best_utility(setup.task)
    thr = cfg.gate_threshold
    passed = bool(np.isfinite(hard_margin) and np.isfinite(easy_margin) and hard_margin >= thr and easy_margin >= thr)
    classes = []
    for c in sorted(set(ft["class"])):
        sel = np.asarray([x == c for x in ft["class"]])
        for stratum, hs in (("hard", True), ("easy", False)):
            s = sel & (ft["hard"] == hs)
            if s.any():
                classes.append({"stratum": stratum, "form": c, "forms": int(s.sum()), "proxy_sd": float(np.mean(z[s])),
                                "ref_prob": float(np.mean(np.exp(ft["logp_ref"][s]))), "reachable": float(np.mean(reach[s])),
                                "U": float(np.mean(ft["U"][s]))})
    return {"hard_margin_sd": hard_margin, "easy_margin_sd": easy_margin, "hard_prompts": n_hard, "easy_prompts": n_easy,
            "gate_prompts": m, "floor": cfg.gate_floor, "threshold": thr, "passed": passed,
            "reason": "" if passed else _reason(hard_margin, easy_margin, thr),
            "d_star": float(math.sqrt(max(float(np.mean(kl)), 0.0))) if kl.size else math.nan,
            "kl_star": float(np.mean(kl)) if kl.size else math.nan,
            "G_star": float(best - np.mean(u_star)) if u_star.size else math.nan,
            "G_star_hard": float(best - np.mean(u_star[hard_star])) if hard_star.any() else math.nan,
            "G_star_easy": float(best - np.mean(u_star[~hard_star])) if (~hard_star).any() else math.nan,
            "hacked_star_hard": float(np.mean(ft["H"][star[has]][hard_star])) if hard_star.any() else math.nan,
            "classes": classes}


def _reason(hard: float, easy: float, thr: float) -> str:
    out = []
    if not np.isfinite(hard):
        out.append("no hard prompt has both a reachable hacked and a reachable correct form")
    elif hard < thr:
        out.append(f"hard margin {hard:+.2f} sd < {thr:g}")
    if not np.isfinite(easy):
        out.append("no easy prompt has both a reachable correct and a reachable wrong form")
    elif easy < thr:
        out.append(f"easy margin {easy:+.2f} sd < {thr:g}")
    return "; ".join(out)


def gate_rows(results: dict) -> list[dict]:
    """``gates.csv``: one row per (task, channel, seed)."""
    out = []
    for task, res in results.items():
        for key, g in sorted(res.get("gates", {}).items()):
            out.append({"task": task, "channel": g["channel"], "seed": g["seed"], "hard_margin_sd": g["hard_margin_sd"],
                        "easy_margin_sd": g["easy_margin_sd"], "passed": g["passed"], "d_star": g["d_star"],
                        "G_star": g["G_star"], "G_star_hard": g["G_star_hard"], "G_star_easy": g["G_star_easy"],
                        "hard_prompts": g["hard_prompts"], "easy_prompts": g["easy_prompts"], "reason": g["reason"],
                        **{k: g[k] for k in ("judge_accuracy_easy", "judge_p_easy", "judge_at_chance") if k in g}})
    return out


def form_rows(results: dict) -> list[dict]:
    """``gate_forms.csv``: every form class's mean proxy (reference sds), reference probability and reach."""
    return [{"task": task, "channel": g["channel"], "seed": g["seed"], **c}
            for task, res in results.items() for _, g in sorted(res.get("gates", {}).items()) for c in g["classes"]]
