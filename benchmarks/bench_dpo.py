"""Benchmark (not a test): one DPO training step in murphyjax vs TRL's DPOTrainer on SmolLM2-135M, CPU.

    python benchmarks/bench_dpo.py --torch-python /work/venv-parity/bin/python --out bench/

The settings TRL uses: 4 preference pairs of 32 prompt + 96 completion tokens, i.e. input ids
of shape (8, 128) with chosen and rejected in one policy forward; a reference forward without
gradients every step; the sigmoid loss with beta 0.1; gradient clipping at 1.0; AdamW, lr 1e-6, no
weight decay; float32; 2 threads; the same allocator setting on both sides (default: glibc tuned,
``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647``; "tuned-arena" adds
``glibc.malloc.arena_max=1`` and a 1 TiB trim threshold, see ``murphyjax.malloc``); 2 warm-up steps
(JAX compiles in the first) then ``--steps`` timed steps, in ``--rounds`` alternating JAX / TRL worker
processes (pooled). Policy and reference start equal, so the loss
of step 1 is log 2 on both sides (checked). Weights: the real SmolLM2-135M-Instruct when cached
(``murphyjax models fetch smollm2-135m``), else random weights of its configuration (same FLOPs);
the JAX model is exported with ``save_hf`` and loaded by transformers, so both sides hold the same numbers.

TRL's step is timed inside ``trainer.train()`` (a callback takes the time at every ``on_step_end``), so it
includes everything TRL does per step (collation, the two forwards, backward, clipping, AdamW, the
scheduler, metric logging). MFU = 8 N T / time / peak: 6 N T for the policy's forward and backward plus
2 N T for the reference forward (N = 134.5 M parameters, T = 1024 tokens), against the best fp32 matmul
rate measured in the same run on either side (square sizes 512-2048). Each worker is a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import bench_common
from bench_common import _allocators, run_worker


def _timed(fn, warmup, steps):
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        out = fn(i)
        times.append(time.perf_counter() - t)
        if i == 0:
            first = out
    return first, times[warmup:]


def _batch(seed=0, vocab=49152, pairs=4, prompt=32, completion=96):
    import numpy as np

    rng = np.random.default_rng(seed)
    p = rng.integers(20, vocab, (pairs, prompt))
    c, r = rng.integers(20, vocab, (pairs, completion)), rng.integers(20, vocab, (pairs, completion))
    return p, c, r


# ---------------------------------------------------------------- workers (fresh processes)
def peak_jax(a):
    return bench_common.peak_jax()


def peak_torch(a):
    return bench_common.peak_torch(a.threads)


def export(a):
    """Write the benchmark's weights as a Hugging Face folder (real SmolLM2 if cached, else random)."""
    import murphyjax  # noqa: F401
    from murphyjax.llm import LlamaConfig, init, load_pretrained, save_hf
    from murphyjax.llm.fetch import cached_path

    path = cached_path("smollm2-135m")
    if path.exists() and not a.random_weights:
        model, _ = load_pretrained(path)
        source = str(path)
    else:
        model, source = init(LlamaConfig.smollm2_135m(), 0), "random (SmolLM2-135M config)"
    save_hf(model, a.weights)
    return {"source": source, "n_params": model.config.num_params}


def dpo_jax(a):
    import jax
    import numpy as np

    from murphyjax.align import core, preference
    from murphyjax.llm import load_pretrained
    from murphyjax.train import OptimizerConfig

    model, _ = load_pretrained(a.weights, **({} if a.scan is None else {"scan_layers": a.scan}))
    graphdef, params = core.split(model)
    ref = core.copy_tree(params)
    opt = OptimizerConfig(learning_rate=1e-6, weight_decay=0.0, grad_clip=1.0)
    state = [preference.new_state(params, opt)]
    p, c, r = _batch()
    ids = np.concatenate([np.concatenate([p, c], 1), np.concatenate([p, r], 1)]).astype(np.int32)
    cmask = np.zeros(ids.shape, bool)
    cmask[:, p.shape[1]:] = True
    batch = {"ids": ids, "mask": np.ones(ids.shape, bool), "cmask": cmask}
    loss = preference.PreferenceLoss("dpo")

    def step(i):
        state[0], m = preference.preference_step(state[0], batch, np.float32(0.1), ref, graphdef=graphdef, opt=opt,
                                                 loss=loss, prompt_len=p.shape[1] if a.slice_head else None)
        return float(jax.block_until_ready(m["loss"]))

    first, times = _timed(step, a.warmup, a.steps)
    return {"loss_step1": first, "times": times, "tokens": int(ids.size)}


def dpo_torch(a):
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(a.threads)
    model = LlamaForCausalLM.from_pretrained(a.weights, torch_dtype=torch.float32)
    ref = LlamaForCausalLM.from_pretrained(a.weights, torch_dtype=torch.float32)
    try:
        tok = AutoTokenizer.from_pretrained(a.weights)
    except Exception:  # no tokenizer saved: TRL needs one for its text pipeline, which the benchmark bypasses
        from tokenizers import Tokenizer, models

        tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<pad>": 0, "<eos>": 1}, "<pad>")),
                                      pad_token="<pad>", eos_token="<eos>")
    text = Dataset.from_dict({"prompt": ["a"] * 4, "chosen": ["b"] * 4, "rejected": ["c"] * 4})
    args = DPOConfig(output_dir=a.weights + "-trl", beta=0.1, loss_type=["sigmoid"], learning_rate=1e-6,
                     weight_decay=0.0, max_grad_norm=1.0, per_device_train_batch_size=4,
                     max_steps=a.warmup + a.steps, logging_steps=1, report_to=[], save_strategy="no", use_cpu=True,
                     bf16=False, fp16=False, max_length=None, precompute_ref_log_probs=False,
                     dataloader_num_workers=0, seed=0)
    tr = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=text, processing_class=tok)
    p, c, r = _batch()
    tr.train_dataset = Dataset.from_dict({"prompt_ids": p.tolist(), "chosen_ids": c.tolist(), "rejected_ids": r.tolist()})
    stamps = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *args, **kw):
            stamps.append(time.perf_counter())

        def on_step_end(self, *args, **kw):
            stamps.append(time.perf_counter())

    tr.add_callback(Clock())
    tr.train()
    times = [b - a_ for a_, b in zip(stamps[:-1], stamps[1:])]
    loss1 = [h["loss"] for h in tr.state.log_history if "loss" in h][0]
    return {"loss_step1": loss1, "times": times[a.warmup:], "tokens": 8 * (p.shape[1] + c.shape[1])}


WORKERS = {"peak-jax": peak_jax, "peak-torch": peak_torch, "export": export, "dpo-jax": dpo_jax, "dpo-torch": dpo_torch}


# ---------------------------------------------------------------- orchestration
def _run(name, a, allocator):
    args = ["--weights", a.weights, f"--threads={a.threads}", f"--steps={a.steps}", f"--warmup={a.warmup}"]
    args += (["--random-weights"] if a.random_weights else []) + (["--no-slice-head"] if not a.slice_head else [])
    args += [] if a.scan is None else (["--scan"] if a.scan else ["--no-scan"])
    return run_worker(__file__, name, a.torch_python if name.endswith("torch") else sys.executable, args,
                      threads=a.threads, allocator=allocator)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=8, help="timed steps (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="alternating JAX / TRL worker runs (timed steps pooled)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--allocator", type=_allocators, default="tuned",
                    help="comma list of default, tuned, tuned-arena; 'both' (default,tuned) or 'all'")
    ap.add_argument("--random-weights", action="store_true", help="random SmolLM2-135M-shaped weights")
    ap.add_argument("--scan", action=argparse.BooleanOptionalAction, default=None,
                    help="JAX: lax.scan over layers (default: the model config's default)")
    ap.add_argument("--slice-head", action=argparse.BooleanOptionalAction, default=True,
                    help="JAX: output projection only at the positions that predict completion tokens")
    ap.add_argument("--torch-python", default=os.environ.get("MURPHYJAX_TORCH_PYTHON"))
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(WORKERS[a.worker](a)))
        return 0
    if not a.torch_python:
        ap.error("--torch-python (or $MURPHYJAX_TORCH_PYTHON): a Python with torch 2.13 and trl 1.16")
    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as tmp:
        a.weights = os.path.join(tmp, "smollm2")
        info = _run("export", a, "default")
        rows, peaks = [], []
        for alloc in a.allocator:
            peaks += [_run("peak-jax", a, alloc)["gflops"], _run("peak-torch", a, alloc)["gflops"]]
            # alternate the two sides' worker processes, so a drift of the machine's speed (this VM's
            # throughput moves by up to 20 % over minutes) falls on both; statistics pool every round
            res = {"jax": [], "trl": []}
            for _ in range(a.rounds):
                res["jax"].append(_run("dpo-jax", a, alloc))
                res["trl"].append(_run("dpo-torch", a, alloc))
            for fw, rs in res.items():
                times = [t for r in rs for t in r["times"]]
                rows.append({"framework": fw, "allocator": alloc, "median_s": statistics.median(times),
                             "min_s": min(times), "steps": len(times), "loss_step1": rs[0]["loss_step1"],
                             "round_medians": [round(statistics.median(r["times"]), 3) for r in rs],
                             "times": [round(t, 3) for t in times], "tokens": rs[0]["tokens"]})
    peak = max(peaks)
    flops = 8 * info["n_params"] * rows[0]["tokens"]
    for r in rows:
        r["gflops"] = flops / r["median_s"] / 1e9
        r["mfu"] = r["gflops"] / peak
        trl = next(x for x in rows if x["framework"] == "trl" and x["allocator"] == r["allocator"])
        r["speedup_vs_trl"] = trl["median_s"] / r["median_s"]
    print(f"weights: {info['source']}; peak fp32 matmul {peak:.1f} GFLOP/s (max over JAX and torch); "
          f"model FLOPs per step 8 N T = {flops / 1e12:.3f} TFLOP")
    print(f"{'framework':10}{'allocator':12}{'median s':>10}{'min s':>8}{'GFLOP/s':>9}{'MFU':>7}{'vs TRL':>8}{'loss@1':>10}")
    for r in rows:
        print(f"{r['framework']:10}{r['allocator']:12}{r['median_s']:10.3f}{r['min_s']:8.3f}{r['gflops']:9.1f}"
              f"{r['mfu']:7.2f}{r['speedup_vs_trl']:8.2f}{r['loss_step1']:10.6f}")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "bench_dpo.json"), "w") as fh:
            json.dump({"weights": info["source"], "peak_gflops": peak, "peaks": peaks, "rows": rows,
                       "args": {k: v for k, v in vars(a).items() if k not in ("worker", "weights")}}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
