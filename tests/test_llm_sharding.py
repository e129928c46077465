"""Meshes and partition rules; sharded training and sampling equal one device (8 fake CPU devices)."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from murphyjax import sharding as sh
from murphyjax.llm import LlamaConfig, SamplingConfig, init, sample
from murphyjax.train import OptimizerConfig, init_train_state, make_optimizer, make_train_step

CFG = LlamaConfig.tiny()
STEPS = 3


def test_parse_mesh():
    m = sh.parse_mesh("data:4,model:2")
    assert dict(m.shape) == {"data": 4, "model": 2}
    assert all(t == jax.sharding.AxisType.Auto for t in m.axis_types)
    assert dict(sh.parse_mesh("fsdp:-1,model:2").shape) == {"fsdp": 4, "model": 2}
    for bad, msg in [("data:3", "needs 3 devices"), ("data:4,data:2", "distinct"), ("pipe:8", "distinct axes"),
                     ("data:x", "integer"), ("data:-1,model:-1", "at most one"), ("", "empty")]:
        with pytest.raises(ValueError, match=msg):
            sh.parse_mesh(bad)


def test_partition_rules_written_out():
    mesh = sh.parse_mesh("fsdp:4,model:2")
    spec = lambda path, shape: sh.spec_for(path, shape, mesh)  # noqa: E731
    assert spec("blocks/wqkv", (2, 64, 2, 4, 16)) == P(None, "fsdp", "model", None, None)  # split by KV head
    assert spec("blocks/w_down", (2, 128, 64)) == P(None, "model", "fsdp")
    assert spec("embed", (256, 64)) == P("model", "fsdp")
    assert spec("opt/0/mu/blocks/w_gate_up", (2, 64, 2, 128)) == P(None, "fsdp", None, "model")  # optimizer moments too
    assert spec("blocks/attn_norm", (2, 64)) == P()
    # the per-layer layout (scan_layers=False): paths blocks/layers/<i>/..., no layer axis
    assert spec("blocks/layers/wqkv", (64, 2, 4, 16)) == P("fsdp", "model", None, None)
    assert spec("opt/0/nu/blocks/layers/w_gate_up", (64, 2, 128)) == P("fsdp", None, "model")
    assert spec("blocks/layers/wo", (64, 64)) == P("model", "fsdp")
    assert spec("embed", (255, 64)) == P(None, "fsdp")  # 255 rows do not split in 2: replicated
    dp = sh.parse_mesh("data:8")
    assert sh.spec_for("blocks/wqkv", (2, 64, 2, 4, 16), dp) == P(None, None, None, None, None)  # pure data parallel
    assert sh.batch_spec(sh.parse_mesh("data:2,fsdp:2,model:2"), 3, 1) == P(None, ("data", "fsdp"), None)


def _batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, CFG.vocab_size, (1, 8, 16)).astype(np.int32)
    mask = np.arange(16)[None, None] < rng.integers(6, 17, (1, 8, 1))
    return {"input_ids": ids, "attention_mask": mask, "loss_mask": mask}


def _train(mesh_spec, cfg=CFG):
    tx = make_optimizer(OptimizerConfig(learning_rate=1e-3))
    graphdef, state = init_train_state(init(cfg, seed=0), tx)
    batch = _batch()
    if mesh_spec is None:
        step = make_train_step(graphdef, tx)
    else:
        mesh = sh.parse_mesh(mesh_spec)
        state = sh.shard(state, mesh)
        step = make_train_step(graphdef, tx, mesh=mesh, state=state)
        batch = sh.shard_batch(batch, mesh, batch_dim=1)
    losses = []
    for _ in range(STEPS):
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    return losses, state


@pytest.fixture(scope="module")
def single():
    return _train(None)


@pytest.mark.parametrize("mesh_spec", ["data:8,model:1", "data:4,model:2", "data:2,model:4",
                                       "data:2,fsdp:2,model:2"])
def test_sharded_training_equals_one_device(single, mesh_spec):
    losses, state = _train(mesh_spec)
    np.testing.assert_allclose(losses, single[0], atol=1e-5, rtol=0)
    # Adam divides by sqrt(v): where a gradient is ~0 its round-off moves a weight by up to lr per step,
    # so parameters are compared against 3 steps * lr = 3e-3 of possible movement, at 1e-4.
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(single[1].params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)
    wq = state.params["blocks"]["wqkv"][...]
    assert len(wq.sharding.device_set) == 8 and wq.sharding.spec == sh.spec_for(
        "blocks/wqkv", wq.shape, sh.parse_mesh(mesh_spec))


def test_per_layer_layout_sharded_equals_one_device_and_the_stacked_layout(single):
    cfg = LlamaConfig.tiny(scan_layers=False)
    one, _ = _train(None, cfg)
    losses, state = _train("data:2,fsdp:2,model:2", cfg)
    np.testing.assert_allclose(losses, one, atol=1e-5, rtol=0)
    np.testing.assert_allclose(one, single[0], atol=1e-5, rtol=0)  # same init, same numbers as the scan
    w = state.params["blocks"]["layers"][1]["wqkv"][...]
    assert w.sharding.spec == P("fsdp", "model", None, None)


def test_sharded_sampling_equals_one_device():
    model = init(CFG, seed=0)
    ids = np.random.default_rng(1).integers(0, CFG.vocab_size, (4, 5)).astype(np.int32)
    cfg = SamplingConfig(max_new_tokens=5, temperature=0.0)
    ref = sample(model, ids, None, jax.random.key(0), cfg)
    from flax import nnx

    mesh = sh.parse_mesh("data:4,model:2")
    graphdef, state = nnx.split(model)
    sharded = nnx.merge(graphdef, sh.shard(state, mesh))
    out = sample(sharded, sh.shard_batch(ids, mesh), None, jax.random.key(0), cfg)
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    np.testing.assert_allclose(out.logprobs, ref.logprobs, atol=1e-5)
