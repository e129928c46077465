"""Benchmark (not a test): SmolLM2-135M training step and KV-cache sampling on CPU, JAX vs PyTorch.

    python benchmarks/bench_llm.py --torch-python /work/venv-parity/bin/python --out bench/

Both sides use the same architecture and shapes (random weights of the SmolLM2-135M config), float32,
the same batch, 2 threads, AdamW without clipping, all-token next-token loss; sampling is greedy with a
KV cache, exactly ``--new`` tokens per row (no stop token), prefill included. Each figure is the best of
``--repeats`` timed runs after a warm-up (JAX compile excluded) in each of ``--rounds`` fresh worker
processes per side (alternating JAX and torch, so drift of the machine hits both), for each
``--allocator`` setting, applied identically to both sides: glibc's default, "tuned"
(``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647``, the issue's: the
main arena keeps large buffers up to 2 GiB) and "tuned-arena" (``glibc.malloc.mmap_max=0:
glibc.malloc.trim_threshold=1099511627776:glibc.malloc.arena_max=1``: XLA:CPU's worker threads allocate
from that arena too, and buffers above 2 GiB stay; ``murphyjax.malloc`` explains both).

MFU = model FLOPs / time / peak, with 6 N T for a training step and 2 N T for a forward pass (N = 134.5 M
parameters, tied embedding counted once; T = tokens processed), against the best fp32 matmul rate
measured in the same run (max over square sizes, JAX and torch). The torch side runs in a subprocess of
``--torch-python`` (a venv with the ``parity`` extra), so both are measured by one command. Shared
machines are noisy: JAX and torch runs are interleaved and figures are best-of-N.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import bench_common
from bench_common import _allocators, best_time, run_worker

SMOLLM2 = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30, num_heads=9,
               num_kv_heads=3, head_dim=64, rope_theta=100000.0, rms_norm_eps=1e-5)
# ---------------------------------------------------------------- workers (one per fresh process)

def peak_jax(a):
    return bench_common.peak_jax(a.repeats)


def peak_torch(a):
    return bench_common.peak_torch(a.threads, a.repeats)


def _jax_model(a, **kw):
    import murphyjax  # noqa: F401
    from murphyjax.llm import LlamaConfig, init

    cfg = LlamaConfig(**SMOLLM2, scan_layers=a.scan, **kw)
    return init(cfg, seed=0)


def train_jax(a):
    import jax
    import numpy as np

    from murphyjax.train import OptimizerConfig, init_train_state, make_optimizer, make_train_step

    model = _jax_model(a)
    tx = make_optimizer(OptimizerConfig(learning_rate=1e-4, grad_clip=0.0))
    graphdef, state = init_train_state(model, tx)
    step = make_train_step(graphdef, tx)
    ids = np.random.default_rng(0).integers(0, SMOLLM2["vocab_size"], (1, a.batch, a.seq)).astype(np.int32)
    batch = {"input_ids": ids, "attention_mask": np.ones(ids.shape, bool), "loss_mask": np.ones(ids.shape, bool)}
    box = [state]

    def run():
        box[0], m = step(box[0], batch)
        jax.block_until_ready(m)

    t, times = best_time(run, a.repeats)
    return {"seconds": t, "times": times, "tokens": a.batch * a.seq, "n_params": model.config.num_params}


def _torch_model(a):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=SMOLLM2["vocab_size"], hidden_size=SMOLLM2["hidden_size"],
                      intermediate_size=SMOLLM2["intermediate_size"], num_hidden_layers=SMOLLM2["num_layers"],
                      num_attention_heads=SMOLLM2["num_heads"], num_key_value_heads=SMOLLM2["num_kv_heads"],
                      head_dim=SMOLLM2["head_dim"], rms_norm_eps=SMOLLM2["rms_norm_eps"],
                      rope_parameters={"rope_type": "default", "rope_theta": SMOLLM2["rope_theta"]},
                      tie_word_embeddings=True, max_position_embeddings=8192)
    return LlamaForCausalLM(cfg).float()


def train_torch(a):
    import torch

    model = _torch_model(a).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    ids = torch.randint(0, SMOLLM2["vocab_size"], (a.batch, a.seq))

    def run():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()

    t, times = best_time(run, a.repeats)
    return {"seconds": t, "times": times, "tokens": a.batch * a.seq,
            "n_params": sum(p.numel() for p in model.parameters())}


def sample_jax(a):
    import jax
    import numpy as np

    from murphyjax.llm import SamplingConfig, sample

    model = _jax_model(a)
    ids = np.random.default_rng(0).integers(0, SMOLLM2["vocab_size"], (a.sample_batch, a.prompt)).astype(np.int32)
    cfg = SamplingConfig(max_new_tokens=a.new, temperature=0.0)
    t, times = best_time(lambda: jax.block_until_ready(sample(model, ids, None, jax.random.key(0), cfg).tokens),
                     a.repeats)
    return {"seconds": t, "times": times, "tokens": a.sample_batch * a.new,
            "forward_tokens": a.sample_batch * (a.prompt + a.new), "n_params": model.config.num_params}


def sample_torch(a):
    import torch

    model = _torch_model(a).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    ids = torch.randint(0, SMOLLM2["vocab_size"], (a.sample_batch, a.prompt))

    def run():
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=a.new,
                                 min_new_tokens=a.new, do_sample=False, use_cache=True)
        assert out.shape[1] == a.prompt + a.new

    t, times = best_time(run, a.repeats)
    return {"seconds": t, "times": times, "tokens": a.sample_batch * a.new,
            "forward_tokens": a.sample_batch * (a.prompt + a.new),
            "n_params": sum(p.numel() for p in model.parameters())}


# (name, M, K, N) of the training step's products at batch 4 x 128: activations (M = tokens) times weights,
# and the weight gradients, which contract over the tokens (stored tokens-major: A^T B)
MATMULS = [("qkv fwd", 512, 576, 960), ("gate_up fwd", 512, 576, 3072), ("down fwd", 512, 1536, 576),
           ("o fwd", 512, 576, 576), ("head fwd", 508, 576, 49152), ("head dx", 508, 49152, 576)]
MATMULS_T = [("gate_up dW", 576, 512, 3072), ("down dW", 1536, 512, 576), ("head dW", 49152, 508, 576)]


def _matmul_rates(mm, repeats):
    out = {}
    for transposed, shapes in ((False, MATMULS), (True, MATMULS_T)):
        for name, m, k, n in shapes:
            t, _ = best_time(mm(m, k, n, transposed), max(repeats, 7))
            out[name] = round(2 * m * k * n / t / 1e9, 1)
    return out


def matmul_jax(a):
    import jax
    import jax.numpy as jnp
    import numpy as np

    def mm(m, k, n, transposed):
        x = jnp.asarray(np.random.rand(*((k, m) if transposed else (m, k))), jnp.float32)
        y = jnp.asarray(np.random.rand(k, n), jnp.float32)
        f = jax.jit(lambda x, y: (x.T if transposed else x) @ y)
        return lambda: f(x, y).block_until_ready()

    return {"gflops": _matmul_rates(mm, a.repeats)}


def matmul_torch(a):
    import torch

    torch.set_num_threads(a.threads)

    def mm(m, k, n, transposed):
        x, y = torch.rand(*((k, m) if transposed else (m, k))), torch.rand(k, n)
        return lambda: (x.t() if transposed else x) @ y

    return {"gflops": _matmul_rates(mm, a.repeats)}


WORKERS = {"peak-jax": peak_jax, "peak-torch": peak_torch, "train-jax": train_jax, "train-torch": train_torch,
           "sample-jax": sample_jax, "sample-torch": sample_torch, "matmul-jax": matmul_jax,
           "matmul-torch": matmul_torch}


# ---------------------------------------------------------------- orchestration

def _run_worker(name, a, allocator):
    args = [f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items()
            if k in ("batch", "seq", "sample_batch", "prompt", "new", "repeats", "threads")]
    args.append("--scan" if a.scan else "--no-scan")
    return run_worker(__file__, name, a.torch_python if name.endswith("torch") else sys.executable, args,
                      threads=a.threads, allocator=allocator, xla_flags=a.xla_flags)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--sample-batch", type=int, default=4)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="alternating JAX / torch worker runs per part")
    p.add_argument("--scan", action=argparse.BooleanOptionalAction, default=True, help="lax.scan over layers (JAX)")
    p.add_argument("--xla-flags", default="", help="extra XLA_FLAGS for the JAX workers")
    p.add_argument("--torch-python", default=os.environ.get("MURPHYJAX_TORCH_PYTHON"),
                   help="a Python with torch + transformers (default $MURPHYJAX_TORCH_PYTHON)")
    p.add_argument("--allocator", type=_allocators, default="both",
                   help="comma list of default, tuned, tuned-arena; 'both' (default,tuned) or 'all'")
    p.add_argument("--parts", default="train,sample", help="comma list of train, sample, matmul")
    p.add_argument("--out", default=None, help="folder for bench_llm.csv / .json")
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(WORKERS[a.worker](a)))
        return 0
    if not a.torch_python:
        p.error("--torch-python (or $MURPHYJAX_TORCH_PYTHON) is required: the PyTorch side runs there")
    rows, peaks, matmuls = [], [], []
    for alloc in a.allocator:
        for part in a.parts.split(","):
            if part == "matmul":  # GFLOP/s of the step's products on their exact shapes, per framework
                rates = {fw: _run_worker(f"matmul-{fw}", a, alloc)["gflops"] for fw in ("jax", "torch")}
                print(f"\nmatmul GFLOP/s ({alloc} allocator, {a.threads} threads, best of >= 7)")
                for name in rates["jax"]:
                    print(f"  {name:12}  jax {rates['jax'][name]:7.1f}  torch {rates['torch'][name]:7.1f}")
                matmuls.append({"allocator": alloc, **{f"{fw}/{k}": v for fw, r in rates.items() for k, v in r.items()}})
                continue
            # the peak is re-measured before every part; MFU uses the best rate seen in the whole run
            peaks += [_run_worker("peak-jax", a, alloc)["gflops"], _run_worker("peak-torch", a, alloc)["gflops"]]
            # --rounds alternating fresh workers per side (this VM's speed drifts over minutes); best call wins
            runs = {"jax": [], "torch": []}
            for _ in range(a.rounds):
                for fw in runs:
                    runs[fw].append(_run_worker(f"{part}-{fw}", a, alloc))
            res = {fw: {**min(rs, key=lambda r: r["seconds"]), "times": [t for r in rs for t in r["times"]]}
                   for fw, rs in runs.items()}
            for fw, r in res.items():
                flops = (6 * r["n_params"] * r["tokens"] if part == "train" else 2 * r["n_params"] * r["forward_tokens"])
                rows.append(dict(part=part, framework=fw, allocator=alloc, seconds=round(r["seconds"], 4),
                                 tokens_per_s=round(r["tokens"] / r["seconds"], 1),
                                 ratio_jax_over_torch=round(res["torch"]["seconds"] / res["jax"]["seconds"], 3),
                                 gflops=round(flops / r["seconds"] / 1e9, 1), peak_before=round(max(peaks[-2:]), 1),
                                 times=" ".join(f"{t:.3f}" for t in r["times"])))
                print(json.dumps(rows[-1]), flush=True)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
    if matmuls and a.out:
        with open(os.path.join(a.out, "bench_llm_matmul.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(matmuls[0]))
            w.writeheader()
            w.writerows(matmuls)
    if not rows:
        return 0
    peak = max(peaks)
    for r in rows:
        r["mfu"] = round(r["gflops"] / peak, 3)
        r["peak_gflops"] = round(peak, 1)
    print(f"\n{'part':7}{'fw':7}{'allocator':12}{'s/call':>9}{'tok/s':>9}{'JAX/torch':>11}{'MFU':>7}{'peak GF/s':>11}")
    for r in rows:
        print(f"{r['part']:7}{r['framework']:7}{r['allocator']:12}{r['seconds']:9.3f}{r['tokens_per_s']:9.1f}"
              f"{r['ratio_jax_over_torch']:11.2f}{r['mfu']:7.2f}{r['peak_gflops']:11.1f}")
    if a.out:
        with open(os.path.join(a.out, "bench_llm.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        with open(os.path.join(a.out, "bench_llm.json"), "w") as f:
            json.dump({"args": {k: v for k, v in vars(a).items() if k != "worker"}, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
