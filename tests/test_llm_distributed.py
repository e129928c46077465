"""Two processes on localhost through jax.distributed (CPU collectives: gloo) == one process."""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from murphyjax import distributed

WORKER = textwrap.dedent('''
    import sys
    import numpy as np
    from murphyjax import distributed
    pid, nproc, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if nproc > 1:
        assert distributed.initialize(f"127.0.0.1:{port}", nproc, pid)
    import jax
    from murphyjax import sharding as sh
    from murphyjax.llm import LlamaConfig, init
    from murphyjax.train import OptimizerConfig, init_train_state, make_optimizer, make_train_step

    cfg = LlamaConfig.tiny(num_layers=1)
    mesh = sh.parse_mesh("data:-1")
    assert mesh.size == 2, mesh
    rng = np.random.default_rng(0)  # every process builds the same global batch
    ids = rng.integers(0, cfg.vocab_size, (1, 4, 12)).astype(np.int32)
    batch = {"input_ids": ids, "attention_mask": np.ones(ids.shape, bool), "loss_mask": np.ones(ids.shape, bool)}
    tx = make_optimizer(OptimizerConfig(name="sgd", learning_rate=0.5))
    graphdef, state = init_train_state(init(cfg, seed=0), tx)
    state = sh.shard(state, mesh)
    step = make_train_step(graphdef, tx, mesh=mesh, state=state)
    losses = []
    for _ in range(3):
        state, m = step(state, sh.shard_batch(batch, mesh, batch_dim=1))
        losses.append(float(m["loss"].addressable_data(0)))
    if jax.process_index() == 0:
        np.savez(out, losses=np.array(losses),
                 *[np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(state.params)])
    print("ok", jax.process_index(), jax.process_count(), flush=True)
''')


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    one_env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    one = subprocess.run([sys.executable, str(script), "0", "1", "0", str(tmp_path / "one.npz")],
                         env=one_env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(script), str(i), "2", port, str(tmp_path / "two.npz")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-3000:]
    assert "ok 0 2" in outs[0][0] and "ok 1 2" in outs[1][0]
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    np.testing.assert_allclose(b["losses"], a["losses"], rtol=0, atol=1e-6)
    for k in a.files:
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-6)


def test_initialize_is_a_no_op_without_configuration(monkeypatch):
    for v in distributed.ENV.values():
        monkeypatch.delenv(v, raising=False)
    assert distributed.initialize() is False
    monkeypatch.setenv(distributed.ENV["coordinator_address"], "127.0.0.1:1")
    with pytest.raises(ValueError, match="num_processes and process_id"):
        distributed.initialize()
    with pytest.raises(ValueError, match="process_id must be in"):
        distributed.initialize("127.0.0.1:1", 2, 5)
