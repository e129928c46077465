"""DPO parity with TRL's DPOTrainer on an identical tiny model and batch (the `parity` extra).

The torch side runs in a subprocess: ``sys.executable`` when it has torch and trl, else the interpreter
named by ``MURPHYJAX_TORCH_PYTHON`` (e.g. /work/venv-parity/bin/python); skipped when neither has them.
It builds a tiny random Llama (tied head), a reference that differs from it, tokenizes four preference
pairs with a word-level tokenizer through DPOTrainer's own pipeline, and saves: both models
(safetensors), TRL's collated batch, TRL's loss, metrics and gradients on that batch, and the policy
after two ``trainer.train()`` steps (sigmoid loss, beta 0.1, AdamW lr 1e-3, no weight decay, clip 1.0).
murphyjax then loads the same weights and runs ``preference_step`` on the same arrays.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from murphyjax.align import core, preference
from murphyjax.llm import load_pretrained
from murphyjax.train import OptimizerConfig


def _python():
    if importlib.util.find_spec("torch") and importlib.util.find_spec("trl"):
        return sys.executable
    exe = os.environ.get("MURPHYJAX_TORCH_PYTHON")
    if exe and subprocess.run([exe, "-c", "import torch, trl"], capture_output=True).returncode == 0:
        return exe
    return None


PY = _python()
pytestmark = pytest.mark.skipif(not PY, reason="torch/trl are absent (install the 'parity' extra or set "
                                               "MURPHYJAX_TORCH_PYTHON to a Python that has torch and trl)")

SCRIPT = textwrap.dedent('''
    import json, sys, numpy as np, torch
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from trl import DPOConfig, DPOTrainer
    from safetensors.numpy import save_file
    out = sys.argv[1]
    torch.manual_seed(0)
    words = "<pad> <eos> Tom has 7 apples . How many ? I think 9 Yes , it is No It 3".split()
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>")
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-5, tie_word_embeddings=True,
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, max_position_embeddings=64,
                      pad_token_id=0, eos_token_id=1)
    model = LlamaForCausalLM(cfg).float()
    ref = LlamaForCausalLM(cfg).float()
    with torch.no_grad():
        ref.load_state_dict(model.state_dict())
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(out + "/policy", safe_serialization=True)
    ref.save_pretrained(out + "/ref", safe_serialization=True)
    ds = Dataset.from_dict({
        "prompt": ["Tom has 7 apples . How many ?", "Tom has 7 apples . How many ? I think 9 .",
                   "Tom has 3 apples . How many ?", "Tom has 3 apples . How many ? I think 7 ."],
        "chosen": [" It is 7 .", " No , it is 7 .", " It is 3 .", " Yes , it is 7 ."],
        "rejected": [" It is 9 .", " Yes , it is 9 .", " It is 7 .", " No , it is 3 ."]})
    args = DPOConfig(output_dir=out + "/trl", beta=0.1, loss_type=["sigmoid"], learning_rate=1e-3, weight_decay=0.0,
                     max_grad_norm=1.0, per_device_train_batch_size=4, max_steps=2, logging_steps=1, report_to=[],
                     lr_scheduler_type="constant", warmup_steps=0, save_strategy="no", use_cpu=True, seed=0,
                     dataloader_drop_last=False, bf16=False, fp16=False)
    tr = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=ds, processing_class=tok)
    batch = tr.data_collator([tr.train_dataset[i] for i in range(4)])
    save_file({k: v.numpy() for k, v in batch.items() if k in ("input_ids", "attention_mask", "completion_mask")},
              out + "/batch.safetensors")
    model.train()
    loss = tr.compute_loss(model, batch)
    loss.backward()
    grads = {n: p.grad.detach().numpy().copy() for n, p in model.named_parameters()}
    metrics = {k: float(np.mean(v)) for k, v in tr._metrics["train"].items()}
    model.zero_grad()
    tr._metrics["train"].clear()
    save_file(grads, out + "/grads.safetensors")
    tr.train()
    model.save_pretrained(out + "/after", safe_serialization=True)
    logs = [h for h in tr.state.log_history if "loss" in h]
    json.dump({"loss": float(loss), "metrics": metrics, "logs": logs}, open(out + "/trl.json", "w"))
''')


@pytest.fixture(scope="module")
def trl_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("trl")
    r = subprocess.run([PY, "-c", SCRIPT, str(out)], capture_output=True, text=True, timeout=900,
                       env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"})
    assert r.returncode == 0, r.stderr[-4000:]
    import json

    from safetensors.numpy import load_file

    return out, json.loads((out / "trl.json").read_text()), load_file(str(out / "batch.safetensors")), \
        load_file(str(out / "grads.safetensors"))


def _jax_side(out, batch):
    policy, _ = load_pretrained(out / "policy")
    ref, _ = load_pretrained(out / "ref")
    g, p = core.split(policy)
    _, rp = core.split(ref)
    b = {"ids": jnp.asarray(batch["input_ids"], jnp.int32), "mask": jnp.asarray(batch["attention_mask"], bool),
         "cmask": jnp.asarray(batch["completion_mask"], bool)}
    return g, p, rp, b


def test_dpo_loss_metrics_and_gradients_match_trl(trl_run):
    out, trl, batch, grads = trl_run
    g, p, rp, b = _jax_side(out, batch)
    loss_fn = lambda params: preference.pair_loss(params, b, 0.1, rp, graphdef=g, loss=preference.PreferenceLoss("dpo"))  # noqa: E731
    (loss, m), gr = jax.value_and_grad(loss_fn, has_aux=True)(p)
    np.testing.assert_allclose(float(loss), trl["loss"], rtol=2e-5)
    assert abs(float(loss) - np.log(2)) > 1e-3  # the reference differs from the policy: a non-trivial loss
    for k in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        np.testing.assert_allclose(float(m[k]), trl["metrics"][k], rtol=1e-4, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(float(m["rewards/accuracies"]), trl["metrics"]["rewards/accuracies"])
    # gradients: HF names -> the stacked (L, in, out) layout of murphyjax (via the weight exporter's naming)
    from murphyjax.llm.weights import model_to_arrays

    flat = model_to_arrays(core.merge(g, gr))
    assert set(flat) == set(grads), set(flat) ^ set(grads)
    for k, v in grads.items():
        np.testing.assert_allclose(flat[k], v, rtol=2e-4, atol=2e-7, err_msg=k)


def test_two_training_steps_match_trl(trl_run):
    out, trl, batch, _ = trl_run
    g, p, rp, b = _jax_side(out, batch)
    opt = OptimizerConfig(learning_rate=1e-3, weight_decay=0.0, grad_clip=1.0)
    state = preference.new_state(p, opt)
    losses = []
    for _ in range(2):
        state, m = preference.preference_step(state, b, np.float32(0.1), rp, graphdef=g, opt=opt,
                                              loss=preference.PreferenceLoss("dpo"))
        losses.append(float(m["loss"]))
    np.testing.assert_allclose(losses, [h["loss"] for h in trl["logs"]], rtol=1e-4)
    after, _ = load_pretrained(out / "after")
    # Adam's first steps move each weight by ~lr g / (|g| + eps): where |g| is ~eps the float32 round-off of
    # either framework's gradient changes the step by a fraction of lr, hence atol = lr / 100.
    for a, x in zip(jax.tree.leaves(core.split(after)[1]), jax.tree.leaves(state.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(a), rtol=1e-4, atol=1e-5)
    moved = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
                zip(jax.tree.leaves(state.params), jax.tree.leaves(p)))
    assert moved > 1e-3  # two steps of lr 1e-3 did move the policy
