"""One evaluation of a policy on SmolLM2-135M (or a tiny Llama): the fused pass against the obvious one.

    python benchmarks/bench_eval.py --model smollm2 --prompts 128 --rounds 2 --json out.json

Both sides sample 2 completions of every prompt, score them with a reward model (a copy of the backbone
with a scalar head) and compute the exact KL to the reference:

* separate: sample every row (each row prefilled on its own), then full forward passes over prompt +
  completion for the reward model, the policy and the reference (``proxy_scores`` + ``kl_stats``);
* fused (``murphyjax.align.evaluate.sample_scored``): each prompt prefilled once per model, the
  reference's and the reward model's prompt states kept from the previous evaluation (as along a run),
  and the completions scored against those states.

Both use the same rows per compiled call. The numbers agree to float32 round-off (checked here too).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import best_time  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2")
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64, help="rows per compiled call")
    ap.add_argument("--new-tokens", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    if os.environ.get("MURPHYJAX_TUNE_MALLOC", "1") != "0":  # as the murphyjax command does
        from murphyjax.malloc import tune_malloc

        tune_malloc()
    import jax
    import numpy as np

    from murphyjax.align import codec as C
    from murphyjax.align import core, evaluate, tasks
    from murphyjax.llm import SamplingConfig

    if a.model == "smollm2":
        from murphyjax.llm import load_pretrained
        from murphyjax.llm.fetch import cached_path

        model, tok = load_pretrained(cached_path("smollm2-135m"))
        codec = C.ChatCodec(tok, system="Answer the question in one short sentence.")
        P = 40
    else:
        from murphyjax.llm import LlamaConfig, init

        texts = [tasks.response(v) for v in range(10)]
        prompts = tasks.make_prompts(tasks.TaskConfig(), 512, np.random.default_rng(0))["prompt"]
        codec = C.WordCodec.from_texts(prompts + texts)
        model = init(LlamaConfig.tiny(vocab_size=codec.vocab_size, max_seq_len=64), 0)
        P = 16
    g, pol = core.split(model)
    ref = jax.tree.map(lambda x: x * 1.0, pol)
    rm = {"lm": ref, "head": {"w": np.full(model.config.hidden_size, 0.01, np.float32), "b": np.float32(0.0)}}
    prompts = tasks.make_prompts(tasks.TaskConfig(kind="flattery"), a.prompts, np.random.default_rng(1))
    ids, mask = C.encode_prompts(codec, prompts["prompt"], P)
    scfg = SamplingConfig(max_new_tokens=a.new_tokens, stop_tokens=tuple(codec.stop_ids), pad_id=codec.pad_id)
    key = jax.random.key(0)
    index = np.repeat(np.arange(a.prompts), 2)

    def separate():
        seqs, _, _ = evaluate.generate(g, pol, ids[index], mask[index], key, scfg, a.batch)
        r = evaluate.proxy_scores(g, rm, seqs, a.batch)
        kl = evaluate.kl_stats(g, pol, ref, seqs, a.batch, prompt_len=P)
        return seqs, r, kl

    states = evaluate.StateCache()

    def fused():
        res = evaluate.sample_scored(g, pol, ids, mask, key, scfg, samples=2, batch=a.batch, rm_graphdef=g, rm_params=rm,
                                     ref_params=ref, states=states)
        return res["seqs"], res["proxy"], res["kl"]

    t_sep, all_sep = best_time(separate, a.rounds)
    t_fus, all_fus = best_time(fused, a.rounds)
    s1, r1, k1 = separate()
    s2, r2, k2 = fused()
    # the same completions are drawn when the chunks map rows to keys alike (batch rows = batch / 2 prompts)
    same = bool(np.array_equal(s1.ids, s2.ids))
    diff = {"proxy": float(np.max(np.abs(r1 - r2))) if same else None,
            "kl_exact": float(np.max(np.abs(k1["exact"] - k2["exact"]))) if same else None}
    from murphyjax.experiments.reproduce import cpu_model

    out = {"model": a.model, "prompts": a.prompts, "rows": 2 * a.prompts, "batch": a.batch, "new_tokens": a.new_tokens,
           "separate_s": t_sep, "fused_s": t_fus, "speedup": t_sep / t_fus, "separate_all": all_sep,
           "fused_all": all_fus, "same_samples": same, "max_abs_diff": diff, "cpu": cpu_model(),
           "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(out, indent=1))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
