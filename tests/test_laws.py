"""The laws section of ``murphyjax reproduce``: config validation, a tiny end-to-end run,
the stage cache (reused on a re-run, not reused for a changed config) and findings computed from numbers."""

import math
import os

import numpy as np
import pytest

from murphyjax.experiments.laws import directional as laws
from murphyjax.experiments.laws import other_laws as laws_extra
from murphyjax.experiments.laws import section as laws_report
from murphyjax.experiments.laws import text as laws_text
from murphyjax.experiments.laws.config import LawsConfig, config_hash, preset

TINY = dict(seeds=2, variants=("hacked", "symmetric"), n_contexts=64, n_lams=9, lam_max=8.0, mc_samples=1024, tail_arms=256, bon_max_log2=4, sharp_n_max=256,
            audit_size=64, n_labels=2048, taus=(1.0, 0.6), phis=(0.0, 0.1), sharp_cells=((0.1, 0.1),))


@pytest.mark.parametrize("kw, needle", [(dict(seeds=0), "seeds must be an integer >= 1"), (dict(eps=0.5), "eps must be in (0, 0.5)"),
                                        (dict(eps=0.3, spread=0.8), "eps * (1 + spread)"), (dict(temperature=0.5), "temperature"),
                                        (dict(taus=(0.1,), phis=(0.2,)), "every tau must exceed every phi"),
                                        (dict(alpha=0.001), "alpha * n_contexts"), (dict(keep_factor=20.0), "keep_factor * alpha"),
                                        (dict(sharp_cells=((0.1, 0.7),)), "sharp_cells"), (dict(n_lams=2.5), "n_lams"),
                                        (dict(tail_df=3.0), "tail_df"), (dict(variants=("symmetric",)), "includes 'hacked'")])
def test_bad_config_values_raise_one_line_naming_the_field(kw, needle):
    with pytest.raises(ValueError) as e:
        LawsConfig(**kw)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_presets_and_hash():
    assert preset("quick") == LawsConfig()
    assert preset("paper").seeds == 10 and preset("paper").n_contexts == 512
    with pytest.raises(ValueError, match="laws preset must be one of"):
        preset("huge")
    assert config_hash(preset("quick")) != config_hash(preset("quick", seed=1))
    with pytest.raises(ValueError, match="variant must be one of"):
        laws.variant_env(None, LawsConfig(), "sideways")


@pytest.fixture(scope="module")
def tiny_section(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("laws"))
    blocks, tables = laws_report.section("quick", out, seed=3, progress=False, overrides=TINY)
    return out, blocks, tables


def test_tiny_section_end_to_end(tiny_section):
    out, blocks, T = tiny_section
    for name in ("drift", "hacked", "b4", "b10", "gap", "maps", "flagger", "trilemma", "tails", "gao", "sharp"):
        assert os.path.getsize(os.path.join(out, f"fig_laws_{name}.png")) > 10_000, name
    for name in ("laws_cov0", "laws_drift", "laws_b4", "laws_b10", "laws_gap", "laws_peak", "laws_maps", "laws_flagger_sweep",
                 "laws_trilemma", "laws_tails", "laws_gao", "laws_sharp", "laws_looseness", "laws_dilution"):
        assert T[name], name
    assert T["laws_lab_vs_exact"] == []  # no lab passed
    assert {r["variant"] for r in T["laws_b4"]} == {"hacked", "symmetric"} and {r["lam"] for r in T["laws_drift"]} == {1.0, 2.0, 4.0}
    assert len(T["laws_maps"]) == 7 and len(T["laws_flagger_sweep"]) == 4 and len(T["laws_trilemma"]) == 2
    fin = lambda rows, *keys: all(math.isfinite(r[k]) for r in rows for k in keys)
    assert fin(T["laws_drift"], "drift_predicted", "drift_measured", "mass_exact")
    assert fin(T["laws_gap"], "gap_closed_form", "gap_measured", "slope_closed_form")
    assert fin(T["laws_maps"], "line_slope", "line_intercept", "gap_at_kl_ref") and fin(T["laws_sharp"], "paper_bound", "exact_routed")
    cov = {r["variant"]: r for r in T["laws_cov0"]}
    assert cov["hacked"]["cov_learned"] > 0.03 and cov["hacked"]["hacked_pref_hard"] == pytest.approx(0.8)
    maps = {r["intervention"].split(" (")[0]: r for r in T["laws_maps"]}
    assert abs(maps["flagger penalty β*, oracle h = H"]["drift_at_0"]) < 1e-12  # D.3: beta* zeroes rho'_t(0)
    assert maps["penalty with τ = ϕ"]["drift_at_0"] > 0.02  # no information on H: no help (D.6)
    assert maps["temperature t = s/T"]["gap_at_kl_ref"] == pytest.approx(maps["none"]["gap_at_kl_ref"], rel=0.05)  # rescales lambda only
    assert all(r["eq1_holds"] and r["proof_bound_holds"] for r in T["laws_trilemma"])
    assert all(r["bound_holds"] for r in T["laws_sharp"])
    text = str(blocks)
    assert "Findings" in text and "Section time" in text and f"{cov['hacked']['cov_learned']:.4f}" in text


def test_rerun_reuses_the_cache_and_a_changed_config_does_not(tiny_section, monkeypatch):
    out, _, T = tiny_section

    def boom(*a, **k):
        raise AssertionError("recomputed a cached stage")

    for mod, name in ((laws, "run_directional"), (laws, "run_maps"), (laws_extra, "tail_curves"), (laws_extra, "trilemma_region"),
                      (laws_extra, "sharp_curves"), (laws_extra, "dilution_rows")):
        monkeypatch.setattr(mod, name, boom)
    _, T2 = laws_report.section("quick", out, seed=3, progress=False, overrides=TINY)
    np.testing.assert_equal(T2["laws_b4"], T["laws_b4"])  # (nan == nan here)
    np.testing.assert_equal(T2["laws_maps"], T["laws_maps"])
    with pytest.raises(AssertionError, match="recomputed"):
        laws_report.section("quick", out, seed=4, progress=False, overrides=TINY)
    assert len(os.listdir(os.path.join(out, "laws"))) == 2  # one store per (config, code) hash


def _maps_rows(best_gap):
    names = ["none (t = s)", "flagger penalty β*, oracle h = H (D.3)", "temperature t = s/T (D.5)", "penalty with τ = ϕ (uninformative, D.3/D.6)"]
    return [{"intervention": n, "line_slope": 0.1, "line_intercept": 0.1, "kl_ref": 1.0, "gap_at_kl_ref": 0.3, "drift_at_0": 0.1 if i != 1 else 0.0,
             "gap_at_lam_max": best_gap if i == 1 else 0.9} for i, n in enumerate(names)]


def test_findings_follow_the_numbers():
    assert "No intervention removes the gap: the smallest gap at λ_max is 0.25" in laws_text._maps_finding(_maps_rows(0.25))
    assert "brings the gap at λ_max to 0" in laws_text._maps_finding(_maps_rows(0.0))
    row = lambda err, m, fin, mx: {"error": err, "method": m, "true_gain_at_max_pressure": fin, "final_q05": fin, "final_q95": fin,
                                   "max_true_gain": mx, "kl_max": 5.0, "proxy_gain_at_max_pressure": 9.0, "kwa_conditional_at_max_n": 0.01}
    txt = laws_text._tails_finding([row("light: N", "bon", 2.0, 2.0), row("heavy: t", "bon", 0.3, 0.6)])
    assert "peaks and falls back" in txt
    txt = laws_text._tails_finding([row("light: N", "bon", 2.0, 2.0), row("heavy: t", "bon", 0.6, 0.6)])
    assert "does not fall back" in txt
    np.testing.assert_equal(laws_text._worst([{"a": 1.0, "b": 0.5}, {"a": math.nan, "b": 0.0}], "a", "b", "b"), (0.5, 0.5))


def test_lab_comparison_flags_simulations_outside_the_exact_interval():
    """Fake lab arrays holding the exact errors pass; an error shifted by 0.3 falls outside the 99 % interval."""
    from types import SimpleNamespace

    from murphyjax import theory as Th

    lab = SimpleNamespace(replicates=50, alphas=(0.1,), epss=(0.2,), n_grid=(16, 64), synth_tau=0.8, synth_phi=0.05)
    rows = [{"alpha": 0.1, "eps": 0.2}] * 4  # 4 seeds
    exact = {"majority_all": Th.bayes_error_grid("all_blind", lab.n_grid, 0.1, 0.2), "oracle": Th.bayes_error_grid("routed", lab.n_grid, 0.1, 0.2),
             "flag_synth": Th.bayes_error_grid("flagged", lab.n_grid, 0.1, 0.2, 0.8, 0.05)}
    A = {f"test.{p}.err": np.broadcast_to(np.asarray(v), (4, 2, 2)).copy() for p, v in exact.items()}
    out = laws_extra.lab_comparison(lab, rows, A)
    assert len(out) == 6 and all(r["within_interval"] and r["implementations_agree"] for r in out)
    A["test.oracle.err"] = A["test.oracle.err"] + 0.3
    out = laws_extra.lab_comparison(lab, rows, A)
    assert [r["within_interval"] for r in out if r["protocol"] == "oracle"] == [False, False]
    assert laws_extra.lab_comparison(lab, rows, None) == []
