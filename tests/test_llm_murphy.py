"""The LLM Murphy experiments end to end on a micro configuration: report, resume, determinism, bad values."""

import json
import os

import numpy as np
import pytest

from murphyjax.experiments.llm import methods as llm_methods
from murphyjax.experiments.llm import section as llm_report
from murphyjax.experiments.llm import run as llm_run
from murphyjax.experiments.llm.config import LLMLabConfig, llm_preset

MICRO = dict(d_model=32, layers=1, heads=2, kv_heads=1, n_demos=96, n_pairs=64, n_prompts=32, n_eval=16, ref_steps=6,
             ref_batch=16, rm_steps=4, rm_batch=8, seeds=1, eval_points=1, sft_steps=2, pref_steps=2, pref_batch=8,
             rl_iters=2, rl_prompts=8, group_size=2, bon_samples=4, rest_iters=1, rest_samples=2, rest_steps=2,
             methods=("sft", "dpo", "ppo", "bon"), variants=("base", "maps", "maps_learned", "route", "learned"), kl_coefs=(0.2,), dpo_betas=(),
             temperatures=(0.7, 1.0), rhos=(0.0, 1.0), workers=1, variant_methods=())


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("llm")
    cfg = llm_preset("quick", **MICRO)
    blocks, tables = llm_report.section("quick", out, cfg=cfg, log=lambda *a: None)
    return cfg, out, blocks, tables


def test_section_writes_figures_tables_and_data(micro_run):
    cfg, out, blocks, tables = micro_run
    for kind in ("gap", "hardmass", "proxy_true", "pressure"):
        assert (out / f"fig_llm_{kind}_sycophancy.png").stat().st_size > 1000
    assert (out / "llm_points.parquet").exists() and (out / "llm" / "sycophancy" / "data" / "eval.parquet").exists()
    mt = tables["llm_method_table"]
    assert {(r["method"], r["variant"]) for r in mt} == {
        (m, v) for m in cfg.methods for v in llm_methods.VALID[m]
        if v in cfg.variants and (v == "base" or not cfg.variant_methods or m in cfg.variant_methods)}
    for r in tables["llm_points"]:
        if r["pressure"] == 0 and r["method"] != "bon":
            assert r["gap"] == 0.0 and r["kl_exact"] == 0.0  # every run starts at the reference
    assert {r["temperature"] for r in tables["llm_temperature"]} == {0.7, 1.0}
    assert {r["shift"] for r in tables["llm_shift"]} == {0.0, 1.0}
    learned = [r for r in llm_run.collect_llm(cfg, out)[0]["sycophancy"]["runs"] if r["variant"] == "maps_learned"]
    assert learned and all(0 <= r["maps_flagger_tau"] <= 1 and 0 <= r["maps_flagger_phi"] <= 1 for r in learned)
    fl = json.loads((out / "llm" / "sycophancy" / "flagger_s0.json").read_text())
    assert len(fl["flags"]) == cfg.n_pairs and 0 <= fl["tau"] <= 1
    from murphyjax.experiments.common import report

    md = report.render_md(blocks)
    assert "Method table" in md and "Predicted next to measured" in md


def test_rerun_resumes_without_recomputing_and_a_recomputed_unit_is_identical(micro_run, monkeypatch):
    cfg, out, _, _ = micro_run
    folder = out / "llm" / "sycophancy"
    key = llm_run.run_key("dpo", "maps", None, 0)
    stored = json.loads((folder / f"{key}.json").read_text())
    os.remove(folder / f"{key}.json")
    calls = []
    real = llm_methods.run

    def spy(ctx):
        calls.append((ctx.method, ctx.variant))
        return real(ctx)

    monkeypatch.setattr(llm_methods, "run", spy)
    res = llm_run.run_llm(cfg, out, log=lambda *a: None)
    assert calls == [("dpo", "maps")]  # only the missing unit ran; reference and reward models were loaded
    again = next(r for r in res["sycophancy"]["runs"] if (r["method"], r["variant"]) == ("dpo", "maps") and
                 not any(r["sweep"].values()))
    for a, b in zip(stored["curve"], again["curve"]):
        for k, v in a.items():
            if k not in ("seconds",) and isinstance(v, float):
                np.testing.assert_allclose(b[k], v, rtol=1e-6, atol=1e-7, err_msg=k)


def test_a_different_configuration_in_the_same_folder_is_refused(micro_run):
    cfg, out, _, _ = micro_run
    with pytest.raises(ValueError, match="different configuration"):
        llm_run.run_llm(llm_preset("quick", **dict(MICRO, seed=1)), out, log=lambda *a: None)


@pytest.mark.parametrize("kw, needle", [({"seeds": 0}, "seeds"), ({"model": "gpt"}, "model"), ({"methods": ("x",)}, "methods"),
                                        ({"variants": ("maps",)}, "base"), ({"rhos": (5.0,)}, "rhos"),
                                        ({"maps_tau": 0.1, "maps_phi": 0.2}, "maps_tau"), ({"rest_keep": 0.0}, "rest_keep"),
                                        ({"pref_lr": 0.0}, "pref_lr"), ({"rl_lr": float("inf")}, "rl_lr"),
                                        ({"fdpo_divergence": "hellinger"}, "fdpo_divergence"),
                                        ({"d_model": 90, "heads": 4}, "heads must divide d_model"),
                                        ({"heads": 4, "kv_heads": 3}, "kv_heads must divide heads"),
                                        ({"temperatures": ()}, "temperatures"), ({"variant_seeds": 9}, "variant_seeds"),
                                        ({"variant_methods": ("rest",), "methods": ("dpo",)}, "variant_methods")])
def test_bad_configuration_values_name_the_field(kw, needle):
    with pytest.raises(ValueError, match=needle):
        LLMLabConfig(**kw)


def test_presets_and_overrides():
    assert llm_preset("llm").model == "smollm2-135m" and llm_preset("quick").model == "tiny"
    assert llm_report._overrides(["seeds=3", "tasks=sycophancy,length", "llm_judge=false"]) == \
        {"seeds": 3, "tasks": ("sycophancy", "length"), "llm_judge": False}
    with pytest.raises(ValueError, match="unknown key"):
        llm_report._overrides(["nope=1"])
    with pytest.raises(ValueError, match="preset"):
        llm_preset("paper")
