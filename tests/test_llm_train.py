"""SFT primitives: masked next-token loss, chat-formatted data, gradient accumulation, bf16 option."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from llm_utils import CHATML, tiny_vocab

from murphyjax.llm import LlamaConfig, init
from murphyjax.llm.tokenizer import build_bpe_tokenizer
from murphyjax.train import (OptimizerConfig, batch_at, chat_example, init_train_state, make_optimizer,
                             make_train_step, masked_nll, stack_examples)

TOKENS, TYPES, MERGES = tiny_vocab()
CFG = LlamaConfig.tiny(vocab_size=len(TOKENS))


def random_batch(n, s=12, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, CFG.vocab_size, (n, s)).astype(np.int32)
    lengths = rng.integers(4, s + 1, n)  # different padding per row
    mask = np.arange(s)[None] < lengths[:, None]
    loss = mask & (np.arange(s)[None] >= 2)
    return {"input_ids": ids, "attention_mask": mask, "loss_mask": loss}


def test_masked_nll_written_out():
    logits = jnp.zeros((1, 4, 10), jnp.float32)  # uniform: every token costs log 10
    ids = jnp.asarray([[1, 2, 3, 4]])
    total, n = masked_nll(logits, ids, jnp.asarray([[1, 0, 1, 1]]))  # targets 3 and 4 (position 0 never)
    assert float(n) == 2.0 and float(total) == pytest.approx(2 * math.log(10), rel=1e-6)
    logits = logits.at[0, 1, 3].set(5.0)  # p(3 | ...) = e^5 / (e^5 + 9)
    total, _ = masked_nll(logits, ids, jnp.asarray([[0, 0, 1, 0]]))
    assert float(total) == pytest.approx(-5 + math.log(math.exp(5) + 9), abs=1e-6)  # float32 round-off


def test_token_logprobs_gradient_is_onehot_minus_softmax():
    from murphyjax.llm import token_logprobs

    logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 7)) * 3, jnp.float32)
    targets = jnp.asarray([[0, 6, 2], [3, 3, 5]])
    w = jnp.asarray([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    reference = lambda z: jnp.sum(w * jnp.take_along_axis(jax.nn.log_softmax(z), targets[..., None], -1)[..., 0])  # noqa: E731
    ours = lambda z: jnp.sum(w * token_logprobs(z, targets))  # noqa: E731
    np.testing.assert_allclose(ours(logits), reference(logits), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(ours)(logits), jax.grad(reference)(logits), atol=1e-6)
    onehot = jax.nn.one_hot(targets, 7)  # written out: w * (onehot - softmax)
    np.testing.assert_allclose(jax.grad(ours)(logits), w[..., None] * (onehot - jax.nn.softmax(logits)), atol=1e-6)


def test_chat_example_masks_exactly_the_assistant_turns():
    tok = build_bpe_tokenizer(TOKENS, MERGES, TYPES, bos_id=1, eos_id=2, pad_id=0, chat_template=CHATML)
    msgs = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "world 12"},
            {"role": "user", "content": "again"}, {"role": "assistant", "content": "hello"}]
    ex = chat_example(tok, msgs, max_len=64)
    ids, loss = ex["input_ids"], ex["loss_mask"]
    n = int(ex["attention_mask"].sum())
    assert tok.decode(ids[:n]) == tok.apply_chat_template(msgs, tokenize=False)
    learned = tok.decode(ids[loss])
    assert learned == "world 12<|im_end|>\nhello<|im_end|>\n"
    assert (ids[n:] == 0).all() and not loss[n:].any()
    short = chat_example(tok, msgs, max_len=10)
    assert short["input_ids"].shape == (10,) and short["attention_mask"].all()


def test_batch_at_is_a_pure_function_of_the_step():
    data = {"x": np.arange(10)[:, None]}
    seen = np.concatenate([batch_at(data, t, 2, 1, seed=3)["x"].ravel() for t in range(5)])
    assert sorted(seen.tolist()) == list(range(10))  # one epoch: each example once
    np.testing.assert_array_equal(batch_at(data, 7, 2, 2, seed=3)["x"], batch_at(data, 7, 2, 2, seed=3)["x"])
    assert batch_at(data, 7, 2, 2, seed=3)["x"].shape == (2, 2, 1)


def _run(batch, accum, steps=2, cfg=CFG, opt=OptimizerConfig(learning_rate=1e-2)):
    tx = make_optimizer(opt)
    graphdef, state = init_train_state(init(cfg, seed=1), tx)
    step = make_train_step(graphdef, tx)
    n = len(batch["input_ids"])
    mb = {k: v.reshape(accum, n // accum, *v.shape[1:]) for k, v in batch.items()}
    losses = []
    for _ in range(steps):
        state, m = step(state, mb)
        losses.append(float(m["loss"]))
    return state, losses


def test_gradient_accumulation_equals_the_big_batch():
    batch = random_batch(8)
    sgd = OptimizerConfig(name="sgd", learning_rate=0.5)  # the update is the gradient itself
    big, lb = _run(batch, accum=1, opt=sgd)
    acc, la = _run(batch, accum=4, opt=sgd)
    np.testing.assert_allclose(la, lb, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(acc.params), jax.tree.leaves(big.params)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # a mean of per-micro-batch means would differ: the rows carry different numbers of tokens
    per_mb = [float(masked_nll(jnp.zeros((2, 12, CFG.vocab_size), jnp.float32), batch["input_ids"][i:i + 2],
                               batch["loss_mask"][i:i + 2])[1]) for i in range(0, 8, 2)]
    assert len(set(per_mb)) > 1


def test_training_lowers_the_loss_and_keeps_float32():
    batch = random_batch(4, seed=2)
    state, losses = _run(batch, accum=1, steps=25)
    assert losses[0] == pytest.approx(math.log(CFG.vocab_size), abs=0.05)  # random init: ~ uniform
    assert losses[-1] < 0.5 * losses[0]
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    assert int(state.step) == 25


def test_bf16_compute_trains_like_fp32():
    batch = random_batch(4, seed=2)
    _, l32 = _run(batch, accum=1, steps=3)
    s16, l16 = _run(batch, accum=1, steps=3, cfg=LlamaConfig.tiny(vocab_size=len(TOKENS), dtype="bfloat16"))
    np.testing.assert_allclose(l16, l32, rtol=2e-2)
    assert {x.dtype for x in jax.tree.leaves(s16.params)} == {jnp.dtype(jnp.float32)}


def test_optimizer_config_validation_and_schedules():
    with pytest.raises(ValueError, match="learning_rate"):
        OptimizerConfig(learning_rate=0.0)
    with pytest.raises(ValueError, match="name"):
        OptimizerConfig(name="lion")
    tx = make_optimizer(OptimizerConfig(name="sgd", learning_rate=1.0, warmup_steps=4, grad_clip=0.0))
    params = {"w": jnp.zeros((), jnp.float32)}
    state = tx.init(params)
    updates = []
    for _ in range(6):
        u, state = tx.update({"w": jnp.ones((), jnp.float32)}, state, params)
        updates.append(float(u["w"]))
    assert updates == [0.0, -0.25, -0.5, -0.75, -1.0, -1.0]  # linear warmup, then constant


def test_stack_examples():
    ex = stack_examples([{"a": np.zeros(3)}, {"a": np.ones(3)}])
    assert ex["a"].shape == (2, 3)
