"""One evaluation of a policy on SmolLM2-135M (or a tiny Llama): the fused pass against the obvious one.

    python benchmarks/bench_eval.py --model smollm2 --prompts 128 --rounds 2 --json out.json

Both sides sample 2 completions of every prompt, score them with a reward model (a copy of the backbone
with a scalar head) and compute the exact KL to the reference:

* separate: sample every row (each row prefilled on its own), then full forward passes over prompt +
  completion for the reward model, the policy and the reference (``proxy_scores`` + ``kl_stats``);
* fused (``murphyjax.align.evaluate.sample_scored`` with ``share_trunk=False``): each prompt prefilled
  once per model, the reference's and the reward model's prompt states kept from the previous
  evaluation (as along a run), and the completions scored against those states;
* trunk (``sample_scored``, the default): as the LLM experiments train, policy and reward model differ
  from the reference in their top ``--train-layers`` layers only, so the frozen trunk runs once per
  prompt, and the reference and reward model score the completions with their upper layers from the
  trunk activations the policy's decode produced.

All use the same rows per compiled call. The numbers agree to float32 round-off (checked here too).
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
    ap.add_argument("--train-layers", type=int, default=10, help="upper layers the policy and reward model differ in")
    ap.add_argument("--paths", default="separate,fused,trunk", help="comma-separated subset of separate,fused,trunk")
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

        model, tok = load_pretrained(cached_path("smollm2-135m"), trainable_layers=a.train_layers)
        codec = C.ChatCodec(tok, system="Answer the question in one short sentence.")
        P = 40
    else:
        from murphyjax.llm import LlamaConfig, init

        texts = [tasks.response(v) for v in range(10)]
        prompts = tasks.make_prompts(tasks.TaskConfig(), 512, np.random.default_rng(0))["prompt"]
        codec = C.WordCodec.from_texts(prompts + texts)
        model = init(LlamaConfig.tiny(vocab_size=codec.vocab_size, max_seq_len=64,
                                      trainable_layers=min(a.train_layers, 1)), 0)
        P = 16
    g, ref = core.split(model)
    split = model.config.num_layers - model.config.trainable_layers if model.config.trainable_layers else 0

    def upper_scaled(params, scale):  # a model that trained only its upper layers (and its final norm)
        def f(path, x):
            key = jax.tree_util.keystr(path)
            if "final_norm" in key:
                return x * scale
            if "blocks" not in key:
                return x
            if model.config.scan_layers:
                return x.at[split:].multiply(scale)
            return x * scale if int(key.split("['layers'][")[1].split("]")[0]) >= split else x
        return jax.tree_util.tree_map_with_path(f, params)

    pol = upper_scaled(ref, 1.02)
    rm = {"lm": upper_scaled(ref, 0.98), "head": {"w": np.full(model.config.hidden_size, 0.01, np.float32),
                                                  "b": np.float32(0.0)}}
    paths = a.paths.split(",")
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

    states = {False: evaluate.StateCache(), True: evaluate.StateCache()}

    def fused(share=False):
        res = evaluate.sample_scored(g, pol, ids, mask, key, scfg, samples=2, batch=a.batch, rm_graphdef=g, rm_params=rm,
                                     ref_params=ref, states=states[share], share_trunk=share)
        return res["seqs"], res["proxy"], res["kl"]

    runs = {"separate": separate, "fused": fused, "trunk": lambda: fused(True)}
    times, outs = {}, {}
    for name in paths:
        times[name] = best_time(runs[name], a.rounds)
        outs[name] = runs[name]()
    from murphyjax.experiments.reproduce import cpu_model

    out = {"model": a.model, "prompts": a.prompts, "rows": 2 * a.prompts, "batch": a.batch, "new_tokens": a.new_tokens,
           "train_layers": model.config.trainable_layers, "shared_layers": core.shared_trunk(g, pol, ref, rm["lm"]),
           "cpu": cpu_model(), "date": time.strftime("%Y-%m-%d")}
    for name in paths:
        out[f"{name}_s"], out[f"{name}_all"] = times[name]
    base = paths[0]
    s1, r1, k1 = outs[base]
    for name in paths[1:]:
        s2, r2, k2 = outs[name]
        # the same completions are drawn when the chunks map rows to keys alike (batch rows = batch / 2 prompts)
        same = bool(np.array_equal(s1.ids, s2.ids))
        out[f"{name}_vs_{base}"] = {
            "speedup": times[base][0] / times[name][0], "same_samples": same,
            "max_abs_diff_proxy": float(np.max(np.abs(r1 - r2))) if same else None,
            "max_abs_diff_kl_exact": float(np.max(np.abs(k1["exact"] - k2["exact"]))) if same else None}
    print(json.dumps(out, indent=1))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
