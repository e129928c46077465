"""`murphyjax reproduce`: determinism, sharded == unsharded, resume after a kill, bad values, run folder."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from murphyjax.experiments import reproduce
from murphyjax.experiments.lab import config as presets
from murphyjax.experiments.lab import runner

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = dict(alphas=(0.05, 0.1), epss=(0.1,), ds=(5,), seeds=2, n_grid=(64, 128, 256), replicates=4, rep_batch=2,
            eval_size=64, audit_size=100, ref_index=1, chunk_rows=2)


def tiny(**kw):
    return presets.preset("quick", **dict(TINY, **kw))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run on all (8 fake) devices."""
    out = tmp_path_factory.mktemp("ref")
    table, arrays, info = runner.run(tiny(), str(out), progress=False)
    assert info["chunks"] == 2 and info["chunks_computed"] == 2
    return table, arrays


def test_same_seed_same_numbers_and_another_seed_differs(reference, tmp_path):
    _, a = reference
    _, b, info = runner.run(tiny(), str(tmp_path / "again"), progress=False)
    assert info["chunks_computed"] == 2
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    _, c, _ = runner.run(tiny(seed=1), str(tmp_path / "seed1"), progress=False)
    assert not np.array_equal(a["test.oracle.err"], c["test.oracle.err"])


def test_sharded_over_8_devices_equals_one_device(reference, tmp_path):
    assert len(jax.devices()) == 8  # tests/conftest.py
    _, a = reference
    _, one, info = runner.run(tiny(), str(tmp_path), devices=jax.devices()[:1], progress=False)
    assert info["devices"] == [str(jax.devices()[0])]
    n_int = 0
    for k in a:
        if np.all(a[k] == np.round(a[k])):  # counts, errors, flags: bitwise
            np.testing.assert_array_equal(a[k], one[k], err_msg=k)
            n_int += 1
        else:  # float32 reductions over a different per-device batch: rounding only
            np.testing.assert_allclose(a[k], one[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert n_int >= 15  # e.g. label and draw counts, flags, overflow indicators


@pytest.mark.slow
def test_resume_after_a_kill_gives_the_uninterrupted_numbers(reference, tmp_path):
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, sys, time
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
        import murphyjax
        from murphyjax.experiments.lab import config as presets
        from murphyjax.experiments.lab import runner
        cfg = presets.preset("quick", **{TINY!r})
        runner.run(cfg, {str(out)!r}, progress=False, on_chunk=lambda i: (print("saved", i, flush=True), time.sleep(600)))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()  # blocks until the first chunk is on disk
        assert line.startswith("saved 0"), line
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    store = pathlib.Path(runner.store_dir(str(out), tiny()))
    assert sorted(p.name for p in store.glob("chunk_*.npz")) == ["chunk_0000.npz"]  # killed mid-run
    (store / "chunk_0001.npz.tmp-999").write_bytes(b"torn write")  # a torn temporary file is ignored
    _, arrays, info = runner.run(tiny(), str(out), progress=False)
    assert (info["chunks_resumed"], info["chunks_computed"]) == (1, 1)
    for k, v in reference[1].items():
        np.testing.assert_array_equal(arrays[k], v, err_msg=k)


@pytest.mark.parametrize("args, needle", [
    (["--set", "seeds=0"], "seeds must be an integer >= 1; got 0"),
    (["--set", "alphas=0.01,0.7"], "every entry of alphas must be in (0, 1)"),
    (["--set", "epss=0.5"], "every entry of epss must be in (0, 0.5); got 0.5"),
    (["--set", "n_grid=128,64"], "n_grid must be strictly increasing"),
    (["--set", "nope=1"], "--set: unknown key 'nope'"),
    (["--set", "seeds=two"], "--set seeds: cannot parse 'two'"),
    (["--preset", "huge"], "invalid choice: 'huge'"),
    (["--seed", "-1"], "expected a non-negative integer, got '-1'"),
])
def test_bad_configuration_values_exit_2_with_one_line(args, needle):
    out = subprocess.run([sys.executable, "-m", "murphyjax.cli", "reproduce", *args], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_config_roundtrip_and_hash():
    cfg = presets.preset("paper")
    assert presets.LabConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    assert presets.config_hash(cfg) != presets.config_hash(tiny())
    assert len(runner.rows(cfg)) == 3 * 2 * 2 * 10  # the paper's grid x 10 seeds
    assert all(len({cfg_row["d"] for cfg_row in [runner.rows(cfg)[i] for i in c]}) == 1 for c in runner.chunks(cfg))


def test_run_folder_contents(tmp_path, monkeypatch):
    from murphyjax.experiments.lab import section as sections
    from murphyjax.theory.checks import run_all

    monkeypatch.setattr(sections, "_theory_checks", lambda seed, out: run_all(seed=seed, select="lemma1"))
    out = reproduce.main("quick", str(tmp_path), overrides=dict(TINY), progress=False)
    files = set(os.listdir(out))
    for f in ("report.md", "report.html", "config.json", "environment.json", "fig_d1.png", "fig_d2.png", "fig_d3.png",
              "fig_bound_vs_empirical.png", "fig_oracle_vs_oracle_free.png", "fig_transcript_kl.png",
              "bound_vs_empirical.csv", "d1.csv", "d2.csv", "d3_two_point.csv", "d3_logistic_reach.csv", "transcript_kl.csv"):
        assert f in files, f
    md = (tmp_path / "report.md").read_text()
    assert "Theorem 1's lower bound holds at every one of the" in md and "0 violations" in md
    assert "lemma1.kappa" in md and "9.1 channel reference action" in md  # theory table and errata
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["packages"]["jax"] == jax.__version__ and len(env["devices"]) == 8
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["config"]["seeds"] == 2 and cfg["preset"] == "quick"
    d1 = (tmp_path / "d1.csv").read_text().splitlines()
    assert len(d1) == 1 + 1 * 2 * 1 * 3 * 9  # header + d x alpha x eps x n x lambda


def test_write_csv_writes_numpy_floats_as_plain_numbers(tmp_path):
    import csv

    import numpy as np

    from murphyjax.experiments.reproduce import write_csv

    path = tmp_path / "t.csv"
    write_csv(str(path), [{"a": np.float64(0.1), "b": 0.25, "c": np.float32(0.5), "d": 3}])
    (row,) = csv.DictReader(path.open())
    assert row == {"a": "0.1", "b": "0.25", "c": "0.5", "d": "3"}
    assert float(row["a"]) == 0.1


def _fewer_rows(path):
    from murphyjax.experiments.common.store import load_npz, save_npz

    save_npz(path, {k: v[:1] for k, v in load_npz(path).items()})


CHUNK_CORRUPTIONS = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(bytes(range(256)) * 8),
    "fewer_rows": _fewer_rows,
}


@pytest.mark.parametrize("corruption", CHUNK_CORRUPTIONS)
def test_a_corrupt_chunk_is_reported_and_recomputed(reference, tmp_path, capsys, corruption):
    out = str(tmp_path)
    runner.run(tiny(), out, progress=False)
    path = pathlib.Path(runner.store_dir(out, tiny())) / "chunk_0000.npz"
    CHUNK_CORRUPTIONS[corruption](path)
    _, arrays, info = runner.run(tiny(), out, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert info["chunks_computed"] == 1
    assert len(err) == 1 and str(path) in err[0] and "unreadable" in err[0] and "recomputing it" in err[0], err
    for k, v in reference[1].items():
        np.testing.assert_array_equal(arrays[k], v, err_msg=k)


def _alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's prctl")
def test_helper_processes_die_with_their_parent():
    code = textwrap.dedent("""
        import subprocess, sys, time
        from murphyjax.experiments.lab.section import die_with_parent
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], preexec_fn=die_with_parent)
        print(p.pid, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 20
    while _alive(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(child)
