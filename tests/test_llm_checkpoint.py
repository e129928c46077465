"""Checkpoints: exact round trip, keep-last-N, sharded restore, and resume after SIGKILL == uninterrupted."""

import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from murphyjax import sharding as sh
from murphyjax.checkpoint import Checkpointer
from murphyjax.llm import LlamaConfig, init
from murphyjax.train import OptimizerConfig, init_train_state, make_optimizer

CFG = LlamaConfig.tiny(num_layers=1)


def _state(seed=0):
    tx = make_optimizer(OptimizerConfig())
    return init_train_state(init(CFG, seed=seed), tx)[1]


def test_round_trip_is_exact_and_keeps_the_last_n(tmp_path):
    state = _state(0)
    with Checkpointer(tmp_path / "ck", max_to_keep=2) as ck:
        for step in (1, 2, 3):
            ck.save(step, state, {"data_position": 10 * step})
        ck.wait()
        assert ck.all_steps() == [2, 3] and ck.latest_step() == 3
        restored, meta = ck.restore(like=_state(1))
    assert meta == {"data_position": 30}
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)


def test_restore_onto_a_mesh(tmp_path):
    state = _state(0)
    with Checkpointer(tmp_path / "ck") as ck:
        ck.save(5, state)
        ck.wait()
        mesh = sh.parse_mesh("data:2,model:4")
        restored, _ = ck.restore(like=sh.shard(_state(1), mesh))
    wq = restored.params["blocks"]["wqkv"][...]
    assert wq.sharding.mesh.shape == mesh.shape and wq.sharding.spec == sh.spec_for("blocks/wqkv", wq.shape, mesh)
    np.testing.assert_array_equal(wq, state.params["blocks"]["wqkv"][...])


def test_empty_directory_has_nothing_to_restore(tmp_path):
    with Checkpointer(tmp_path / "none") as ck, pytest.raises(FileNotFoundError):
        ck.restore(like=_state(0))


WORKER = textwrap.dedent('''
    import sys, time
    import numpy as np, jax
    from murphyjax.llm import LlamaConfig, init
    from murphyjax.train import OptimizerConfig, fit, init_train_state, make_optimizer
    from murphyjax.checkpoint import Checkpointer

    ckdir, out, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
    cfg = LlamaConfig.tiny(num_layers=1)
    rng = np.random.default_rng(0)
    data = {"input_ids": rng.integers(0, cfg.vocab_size, (24, 12)).astype(np.int32),
            "attention_mask": np.ones((24, 12), bool), "loss_mask": np.ones((24, 12), bool)}
    tx = make_optimizer(OptimizerConfig(learning_rate=1e-2))
    graphdef, state = init_train_state(init(cfg, seed=0), tx, seed=0)

    def log(msg):
        print(msg, flush=True)
        time.sleep(pause)

    with Checkpointer(ckdir, max_to_keep=2) as ck:
        state, _ = fit(graphdef, state, tx, data, steps=12, batch_size=4, accum_steps=2, seed=1,
                       checkpointer=ck, save_every=2, log_every=1, log=log)
    np.savez(out, *[np.asarray(x) for x in jax.tree.leaves(state)])
    print("done", flush=True)
''')


@pytest.mark.slow
def test_resume_after_sigkill_ends_with_identical_parameters(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    run = lambda ck, out, pause="0": subprocess.run(  # noqa: E731
        [sys.executable, str(script), str(ck), str(out), pause], env=env, capture_output=True, text=True,
        timeout=300)
    ref = run(tmp_path / "ck_ref", tmp_path / "ref.npz")
    assert ref.returncode == 0, ref.stderr[-2000:]

    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "ck"), str(tmp_path / "killed.npz"), "0.3"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("step=7 "):  # checkpoints 2, 4, 6 requested; killed while step 8 runs
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "killed.npz").exists()

    resumed = run(tmp_path / "ck", tmp_path / "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from step " in resumed.stdout
    start = int(resumed.stdout.split("resumed from step ")[1].split()[0])
    assert 2 <= start <= 7 and start % 2 == 0
    a, b = np.load(tmp_path / "ref.npz"), np.load(tmp_path / "resumed.npz")
    assert len(a.files) == len(b.files) > 10
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])  # bit for bit
