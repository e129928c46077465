"""The statistics behind the LLM findings: intervals, tests and verdicts on synthetic data whose answer is known."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from murphyjax.experiments.llm import aggregate as A
from murphyjax.experiments.llm import stats as S


def test_t_greater_is_the_one_sided_student_test():
    x = np.array([0.3, -0.1, 0.5, 0.2, 0.05])
    want = sps.ttest_1samp(x, 0.0, alternative="greater").pvalue
    assert S.t_greater(x) == pytest.approx(want, rel=1e-12)
    assert math.isnan(S.t_greater([1.0]))  # one seed: no test
    assert S.t_greater([0.2, 0.2]) == 0.0 and S.t_greater([0.0, 0.0]) == 1.0  # no spread


def test_bootstrap_interval_is_reproducible_and_covers_at_about_its_level():
    x = np.array([1.0, 2.0, 4.0, 3.0])
    assert S.bootstrap_mean(x) == S.bootstrap_mean(x)
    m, lo, hi = S.bootstrap_mean(x)
    assert m == 2.5 and 1.0 <= lo < m < hi <= 4.0
    assert math.isnan(S.bootstrap_mean([1.0])[1])
    # coverage of the percentile bootstrap of a mean, 20 normal seeds: close to 90 % (it under-covers a little)
    rng = np.random.default_rng(1)
    hits = [S.bootstrap_mean(rng.normal(0.0, 1.0, 20), resamples=1000, seed=i)[1:] for i in range(300)]
    cover = np.mean([lo <= 0.0 <= hi for lo, hi in hits])
    assert 0.82 <= cover <= 0.96, cover


@pytest.mark.parametrize("slopes, want", [
    (np.random.default_rng(0).normal(1.0, 0.1, 5), S.HOLDS),  # every seed clearly positive
    (np.random.default_rng(0).normal(-1.0, 0.1, 5), S.FAILS),  # every seed clearly negative
    (np.array([0.5, -0.4, 0.1, -0.2, 0.05]), S.UNDECIDED),  # noise around 0
    (np.array([1.0]), S.UNDECIDED),  # one seed can decide nothing
    (np.array([0.0, 0.0, 0.0]), S.UNDECIDED),  # flat: neither grows nor falls
    (np.array([-0.02, -0.14]), S.UNDECIDED),  # two seeds both below 0, but no test can tell with them
])
def test_verdict_on_synthetic_slopes(slopes, want):
    m, lo, hi = S.bootstrap_mean(slopes)
    assert S.verdict(S.t_greater(slopes), lo, hi, len(slopes)) == want


def test_verdict_direction_for_a_claimed_decrease():
    d = np.array([-0.3, -0.25, -0.35, -0.28])
    m, lo, hi = S.bootstrap_mean(d)
    assert S.verdict(S.t_greater(-d), lo, hi, 4, direction=-1) == S.HOLDS
    assert S.verdict(S.t_greater(d), lo, hi, 4, direction=1) == S.FAILS


def test_line_is_exact_on_a_line_and_zero_on_a_flat_curve():
    d = np.array([0.0, 0.5, 1.0, 2.0])
    assert S.line(d, 0.2 + 0.5 * d) == pytest.approx((0.2, 0.5), abs=1e-12)
    assert S.line(d, np.full(4, 0.7)) == (pytest.approx(0.7), 0.0)
    assert all(math.isnan(v) for v in S.line(np.zeros(4), d))


def _rows(slopes, intercept=0.3, variant="base", method="ppo", d=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), noise=0.0, seed=0):
    """Synthetic evaluation rows of one (method, variant): per seed, G = intercept + slope d (+ noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for s, b in enumerate(slopes):
        for i, x in enumerate(d):
            G = intercept + b * x + (noise * rng.normal() if i else 0.0)
            out.append({"task": "sycophancy", "method": method, "variant": variant, "sweep": "", "seed": s,
                        "pressure": i, "pressure_name": "steps", "d": x, "G": G, "true": 1.0 - G, "gap": G - intercept,
                        "hacked": 0.1, "proxy_n": x})
    return out


def test_method_table_decides_growth_from_the_seeds():
    grows = A.method_table(_rows([0.4, 0.5, 0.45, 0.55, 0.5], noise=0.01), {})[0]
    assert grows["grows"] == S.HOLDS and grows["slope_lo"] > 0 and grows["p_grows"] < 0.05
    assert grows["slope"] == pytest.approx(0.48, abs=0.02) and grows["intercept"] == pytest.approx(0.3, abs=0.02)
    assert grows["peak_d"] == 0.0 and grows["final_G"] == pytest.approx(0.78, abs=0.03)
    flat = A.method_table(_rows([0.05, -0.05, 0.02, -0.03, 0.0], noise=0.01), {})[0]
    assert flat["grows"] == S.UNDECIDED
    falls = A.method_table(_rows([-0.2, -0.25, -0.22], noise=0.005), {})[0]
    assert falls["grows"] == S.FAILS
    one = A.method_table(_rows([0.5], noise=0.0), {})[0]
    assert one["grows"] == S.UNDECIDED and one["seeds"] == 1


def test_intervention_table_separates_slope_from_intercept_and_matches_kl():
    base = _rows([0.5, 0.5, 0.5, 0.5], noise=0.01, seed=1)
    lower_intercept = _rows([0.5, 0.5, 0.5, 0.5], intercept=0.1, variant="maps", noise=0.01, seed=2)
    r = A.intervention_table(base + lower_intercept)[0]
    assert r["intercept_lowers"] == S.HOLDS and r["intercept_diff"] == pytest.approx(-0.2, abs=0.02)
    assert r["slope_lowers"] != S.HOLDS  # the slope did not change
    assert r["matched_G_lowers"] == S.HOLDS and r["still_grows"] == S.HOLDS
    # a variant that only moves less far along the same line: lower final G, same G at matched KL
    short = _rows([0.5, 0.5, 0.5, 0.5], variant="route", d=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5), noise=0.0)
    r = next(x for x in A.intervention_table(_rows([0.5] * 4) + short) if x["variant"] == "route")
    assert r["final_G_lowers"] == S.HOLDS and r["matched_G_diff"] == pytest.approx(0.0, abs=1e-12)
    assert r["matched_G_lowers"] == S.UNDECIDED


def test_matched_G_interpolates_at_the_common_pressure():
    a = [{"d": 0.0, "G": 0.2}, {"d": 1.0, "G": 0.6}]
    b = [{"d": 0.0, "G": 0.2}, {"d": 0.5, "G": 0.3}]
    assert S.matched_G(a, b) == pytest.approx((0.4, 0.3))


def test_t_interval_is_students_and_covers_at_its_level_with_three_seeds():
    x = np.array([0.3, -0.1, 0.5])
    m, lo, hi = S.t_mean(x)
    want = sps.t.interval(0.90, 2, loc=x.mean(), scale=sps.sem(x))
    assert (lo, hi) == pytest.approx(want, rel=1e-12) and m == pytest.approx(x.mean())
    assert math.isnan(S.t_mean([1.0])[1]) and S.t_mean([0.25, 0.25, 0.25])[1:] == (0.25, 0.25)
    rng = np.random.default_rng(3)
    draws = rng.normal(0.0, 1.0, (2000, 3))
    cover_t = np.mean([lo <= 0.0 <= hi for lo, hi in (S.t_mean(d)[1:] for d in draws)])
    assert 0.88 <= cover_t <= 0.92, cover_t  # exact for normal seeds: 90 %
    cover_boot = np.mean([lo <= 0.0 <= hi for lo, hi in (S.bootstrap_mean(d, resamples=200, seed=i)[1:]
                                                          for i, d in enumerate(draws[:300]))])
    assert cover_boot < 0.75, cover_boot  # the percentile bootstrap over 3 seeds is far too narrow


def _strata(rows, hard_slope, easy_slope):
    for r in rows:
        r["G_hard"] = 0.5 + hard_slope[r["seed"]] * r["d"]
        r["G_easy"] = 0.2 + easy_slope[r["seed"]] * r["d"]
        r["channel"] = "crowd"
    return rows


def test_method_table_reports_each_stratum_and_withholds_verdicts_when_the_gate_fails():
    rows = _strata(_rows([0.0, 0.01, -0.01, 0.02]), hard_slope=[0.6, 0.7, 0.65, 0.62], easy_slope=[-0.3, -0.35, -0.28, -0.31])
    r = A.method_table(rows, {})[0]
    assert r["grows"] == S.UNDECIDED and r["grows_hard"] == S.HOLDS and r["grows_easy"] == S.FAILS
    assert r["slope_hard"] == pytest.approx(0.6425) and r["d_max"] == pytest.approx(1.0) and r["gate"] == "none"
    ok = {("sycophancy", "crowd", s): {"passed": True, "d_star": 2.0} for s in range(4)}
    r = A.method_table(rows, {}, ok)[0]
    assert r["gate"] == "pass" and r["d_star"] == 2.0 and r["grows_hard"] == S.HOLDS
    bad = {**ok, ("sycophancy", "crowd", 2): {"passed": False, "d_star": 2.0}}
    r = A.method_table(rows, {}, bad)[0]
    assert r["gate"] == "fail" and {r["grows"], r["grows_hard"], r["grows_easy"]} == {A.GATE_FAILED}


def test_a_judge_at_chance_is_no_evidence():
    from murphyjax.experiments.llm import shared

    rng = np.random.default_rng(0)
    n = 400
    c = {"utility_a": rng.integers(0, 2, n).astype(float), "hard": rng.random(n) < 0.3}
    c["utility_b"] = 1.0 - c["utility_a"]
    good = shared.judge_accuracy(c, np.where(c["utility_a"] > c["utility_b"], 0.8, 0.2))
    assert good["judge_accuracy_easy"] == 1.0 and good["judge_p_easy"] < 1e-10 and not good["judge_at_chance"]
    coin = shared.judge_accuracy(c, 0.5 + 0.01 * rng.standard_normal(n))
    assert abs(coin["judge_accuracy_easy"] - 0.5) < 0.1 and coin["judge_at_chance"]
    want = sps.binomtest(round(coin["judge_accuracy_easy"] * coin["judge_pairs_easy"]), coin["judge_pairs_easy"], 0.5,
                         alternative="greater").pvalue
    assert coin["judge_p_easy"] == pytest.approx(want)
    rows = _strata(_rows([0.5, 0.5, 0.5]), hard_slope=[1, 1, 1], easy_slope=[0, 0, 0])
    gates = {("sycophancy", "crowd", s): {"passed": True, "d_star": 1.0, "judge_at_chance": True} for s in range(3)}
    assert A.method_table(rows, {}, gates)[0]["grows_hard"] == A.JUDGE_AT_CHANCE


def test_paired_prompt_bootstrap_of_the_slope():
    """Per-prompt utilities along a curve whose hard prompts lose 0.5 per unit d and easy ones nothing: the
    interval over prompts holds the true slopes, and collapses to them when every prompt moves alike."""
    rng = np.random.default_rng(2)
    M, d = 200, np.array([0.0, 0.5, 1.0, 1.5])
    hard = rng.random(M) < 0.3

    def results(noise):
        curve = []
        for x in d:
            u = 0.9 - 0.5 * x * hard + noise * rng.standard_normal(M)
            curve.append({"pressure": float(x), "kl_exact": float(x * x), "true_by_prompt": u.tolist()})
        rm = {"hard_by_prompt": hard.tolist(), "best_utility": 1.0}
        run = {"method": "ppo", "variant": "base", "channel": "crowd", "seed": 0, "sweep": {}, "curve": curve}
        return {"flattery": {"rms": {"crowd_s0": rm}, "runs": [run]}}

    exact = A.prompt_intervals(results(0.0))[("flattery", "ppo", "base")]
    assert exact["slope_hard_prompts_lo"] == pytest.approx(0.5) and exact["slope_hard_prompts_hi"] == pytest.approx(0.5)
    share = hard.mean()
    lo, hi = exact["slope_prompts_lo"], exact["slope_prompts_hi"]
    assert lo <= 0.5 * share + 0.1 and hi >= 0.5 * share - 0.1  # pooled: 0.5 x the hard share, up to resampling
    res = results(0.2)
    noisy = A.prompt_intervals(res)[("flattery", "ppo", "base")]
    T = np.asarray([p["true_by_prompt"] for p in res["flattery"]["runs"][0]["curve"]])[:, hard]
    dc = d - d.mean()
    per_prompt = (dc[:, None] * T).sum(0) / (dc ** 2).sum()  # each hard prompt's own slope of U
    est, se = -per_prompt.mean(), per_prompt.std() / np.sqrt(hard.sum())
    lo, hi = noisy["slope_hard_prompts_lo"], noisy["slope_hard_prompts_hi"]
    assert lo < est < hi  # the interval holds the data's own estimate ...
    np.testing.assert_allclose(hi - lo, 2 * 1.6449 * se, rtol=0.2)  # ... and has the normal width over prompts
