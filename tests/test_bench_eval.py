"""The evaluation benchmark runs on a tiny model and its two paths agree."""

import json

import bench_eval


def test_fused_and_separate_evaluations_agree(tmp_path):
    out = tmp_path / "bench.json"
    bench_eval.main(["--model", "tiny", "--prompts", "8", "--batch", "8", "--rounds", "1", "--json", str(out)])
    r = json.loads(out.read_text())
    assert r["same_samples"] and r["rows"] == 16
    assert r["max_abs_diff"]["proxy"] < 1e-5 and r["max_abs_diff"]["kl_exact"] < 1e-5
    assert r["separate_s"] > 0 and r["fused_s"] > 0
