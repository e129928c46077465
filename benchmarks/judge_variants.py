"""Which prompting makes SmolLM2-135M an informative constitutional (RLAIF) judge: every ``LLMJudge`` mode
on the same candidate pairs.

    python benchmarks/judge_variants.py --pairs 64 --json experiments/results/judge_variants.json \\
        --md experiments/results/judge_variants.md

Per task (flattery, sycophancy, with the ``llm`` preset's task knobs) the pairs are the first ``--pairs`` of
the experiment's own candidate pairs (its seed and random stream, ``experiments/llm/shared.py``), the
same for every mode. Each mode of ``murphyjax.align.judges`` (pairwise = today's judge, fewshot,
likelihood, verify, principles) labels them with the default constitution; the programmatic judge
(``feedback.judge_prob_a``, the constitution's features read exactly) is the reference row: right on easy
pairs, drawn to the hacked response on hard pairs, as the constitution asks. Reported per (mode, task):
``judge_accuracy`` (easy pairs with n and the one-sided binomial p, hard pairs), the expected accuracy of
the Bernoulli(P) labels the channel draws, mean |P - 1/2|, the seconds of the ``prob_a`` call
(compilation included) and the per-pair P. ``--merge`` keeps the records of modes not run this time from
an existing ``--json``; ``--render-only`` recomputes the statistics from the stored P without the model.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

TASKS = ("flattery", "sycophancy")


def _pairs(kind: str, n: int) -> dict:
    """The first ``n`` of the ``llm`` preset's candidate pairs of task ``kind`` (as the experiment draws them)."""
    from murphyjax.align import tasks
    from murphyjax.experiments.llm.config import LLM_PRESETS
    from murphyjax.experiments.llm.shared import TASK_STREAM

    cfg = LLM_PRESETS["llm"]
    c = tasks.candidate_pairs(cfg.task_config(kind), max(n, cfg.n_pairs), np.random.default_rng([cfg.seed, TASK_STREAM[kind], 3]))
    return {k: v[:n] for k, v in c.items()}


def _record(cands: dict, p, seconds: float | None) -> dict:
    """``judge_accuracy`` (the sign of P - 1/2), the expected accuracy of Bernoulli(P) labels (what the
    label channel delivers: the mean P given to the truly better response) on easy and hard pairs, and
    mean |P - 1/2|."""
    from murphyjax.experiments.llm.shared import judge_accuracy

    p = np.asarray(p, float)
    ua, ub = np.asarray(cands["utility_a"], float), np.asarray(cands["utility_b"], float)
    hard, ok = np.asarray(cands["hard"], bool), ua != ub
    p_better = np.where(ua > ub, p, 1.0 - p)
    labels = {f"label_accuracy_{name}": float(p_better[sel].mean()) if sel.any() else float("nan")
              for name, sel in (("easy", ~hard & ok), ("hard", hard & ok))}
    return {**judge_accuracy(cands, p), **labels, "mean_abs_margin": float(np.abs(p - 0.5).mean()),
            "seconds": seconds, "prob_a": p.round(6).tolist()}


def run(modes, kinds, n: int, batch: int, bucket: int, log=print) -> dict:
    from murphyjax.align import feedback, judges
    from murphyjax.experiments.llm.config import LLM_PRESETS
    from murphyjax.llm import load_pretrained
    from murphyjax.llm.fetch import cached_path

    fb = feedback.FeedbackConfig()
    model, tok = load_pretrained(cached_path("smollm2-135m"))
    out = {}
    for kind in kinds:
        c = _pairs(kind, n)
        out[f"programmatic/{kind}"] = _record(c, feedback.judge_prob_a(LLM_PRESETS["llm"].task_config(kind), fb, c), None)
        for mode in modes:
            judge = judges.LLMJudge(model, tok, fb.constitution, mode=mode, batch=batch, bucket=bucket)
            t0 = time.perf_counter()
            p = judge.prob_a(c["prompt"], c["response_a"], c["response_b"])
            rec = out[f"{mode}/{kind}"] = _record(c, p, time.perf_counter() - t0)
            log(f"{mode:>10s} {kind:>10s}: easy {rec['judge_accuracy_easy']:.3f} (n={rec['judge_pairs_easy']}, "
                f"p={rec['judge_p_easy']:.2g}), hard {rec['judge_accuracy_hard']:.3f} (n={rec['judge_pairs_hard']}), "
                f"|P-1/2| {rec['mean_abs_margin']:.3f}, {rec['seconds']:.0f} s")
    return out


def render_md(doc: dict) -> str:
    m = doc["meta"]
    lines = ["# LLM judge variants (SmolLM2-135M-Instruct, default constitution)", "",
             f"{m['pairs']} candidate pairs per task (the first of the `llm` preset's pairs), the same for every variant; "
             f"{m['cpu']}, {m['cpu_count']} cores, shared with another job (load average {m['load_average']:.1f} at the "
             f"start), run under `nice`; {m['date']}. Accuracy: the sign of P - 1/2; label accuracy: the expected accuracy "
             "of Bernoulli(P) labels, the mean P given to the truly better response. Seconds: the `prob_a` call, "
             f"compilation included (batch "
             f"{m['batch']}, length bucket {m['bucket']}). Hard accuracy = 1 - the share of hard pairs where the judge "
             "prefers the hacked response; the constitution asks for a low one. `programmatic` is the constitution's "
             "features read exactly (`feedback.judge_prob_a`), the reference.", "",
             "| variant | task | easy accuracy (n) | binomial p | hard accuracy (n) | label accuracy easy / hard "
             "| mean abs(P - 1/2) | seconds |", "|---|---|---|---|---|---|---|---|"]
    for key, r in doc["results"].items():
        mode, kind = key.split("/")
        sec = "-" if r["seconds"] is None else f"{r['seconds']:.0f}"
        lines.append(f"| {mode} | {kind} | {r['judge_accuracy_easy']:.3f} ({r['judge_pairs_easy']}) | {r['judge_p_easy']:.2g} | "
                     f"{r['judge_accuracy_hard']:.3f} ({r['judge_pairs_hard']}) | {r['label_accuracy_easy']:.3f} / "
                     f"{r['label_accuracy_hard']:.3f} | {r['mean_abs_margin']:.3f} | {sec} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    from murphyjax.align.judges import MODES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--batch", type=int, default=8, help="rows per compiled call")
    ap.add_argument("--bucket", type=int, default=16, help="rows are padded to a multiple of this length")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--md", metavar="FILE")
    ap.add_argument("--merge", action="store_true", help="keep the --json records of modes not run now")
    ap.add_argument("--render-only", action="store_true",
                    help="no model: recompute the statistics from the per-pair P stored in --json, rewrite --json and --md")
    a = ap.parse_args(argv)
    if a.render_only:
        doc = json.loads(Path(a.json).read_text())
        cands = {k: _pairs(k, doc["meta"]["pairs"]) for k in TASKS}
        doc["results"] = {key: _record(cands[key.split("/")[1]], r["prob_a"], r["seconds"]) for key, r in doc["results"].items()}
        return _write(doc, a.json, a.md)
    modes, kinds = a.modes.split(","), a.tasks.split(",")
    bad = [m for m in modes if m not in MODES] + [k for k in kinds if k not in TASKS]
    if bad:
        ap.error(f"unknown modes or tasks {bad}; modes: {MODES}, tasks: {TASKS}")
    from murphyjax.experiments.reproduce import cpu_model

    meta = {"pairs": a.pairs, "batch": a.batch, "bucket": a.bucket, "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d")}
    results = run(modes, kinds, a.pairs, a.batch, a.bucket)
    if a.merge and a.json and Path(a.json).exists():
        old = json.loads(Path(a.json).read_text())
        results = {**old["results"], **results}
        meta["merged_from"] = old["meta"]
    order = ["programmatic", *MODES]
    results = dict(sorted(results.items(), key=lambda kv: (TASKS.index(kv[0].split("/")[1]), order.index(kv[0].split("/")[0]))))
    _write({"meta": meta, "results": results}, a.json, a.md)


def _write(doc: dict, json_path, md_path) -> None:
    if json_path:
        from murphyjax.experiments.common.store import save_json

        save_json(Path(json_path), doc)
    if md_path:
        Path(md_path).write_text(render_md(doc))
    print(render_md(doc))


if __name__ == "__main__":
    main()
