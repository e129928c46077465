"""The evaluation benchmark runs on a tiny model and its three paths agree."""

import json

import bench_eval


def test_separate_fused_and_trunk_evaluations_agree(tmp_path):
    out = tmp_path / "bench.json"
    bench_eval.main(["--model", "tiny", "--prompts", "8", "--batch", "8", "--rounds", "1", "--json", str(out)])
    r = json.loads(out.read_text())
    assert r["rows"] == 16 and r["shared_layers"] >= 1
    for name in ("fused", "trunk"):
        c = r[f"{name}_vs_separate"]
        assert c["same_samples"] and c["max_abs_diff_proxy"] < 1e-5 and c["max_abs_diff_kl_exact"] < 1e-5, name
        assert r[f"{name}_s"] > 0
    assert r["separate_s"] > 0
