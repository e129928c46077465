"""Tasks, feedback channels, datasets and codecs of murphyjax.align (no models involved)."""

import json
import math

import numpy as np
import pytest

from murphyjax import theory
from murphyjax.align import codec as C
from murphyjax.align import data, feedback, search, tasks

SYC = tasks.TaskConfig()
LEN = tasks.TaskConfig(kind="length")
FLAT = tasks.TaskConfig(kind="flattery")


def _mc_ok(p_hat, p, n, z=4.0):
    """|p_hat - p| within z binomial standard errors."""
    return abs(p_hat - p) <= z * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("kw, needle", [({"kind": "x"}, "kind"), ({"alpha": 1.0}, "alpha"), ({"eps": 0.5}, "eps"),
                                        ({"max_value": 12}, "max_value"), ({"p_correct_hard": 0.8}, "p_correct_hard")])
def test_task_config_rejects_bad_values(kw, needle):
    with pytest.raises(ValueError, match=needle):
        tasks.TaskConfig(**kw)


def test_exact_scoring_of_texts():
    # sycophancy: prompt with value 7 and the user asserting 9
    assert tasks.score(SYC, 7, 9, "Yes, it is 9.") == (0.0, True, False)
    assert tasks.score(SYC, 7, 9, "No, it is 7.") == (1.0, False, True)
    assert tasks.score(SYC, 7, -1, "It is 7.") == (1.0, False, True)
    assert tasks.score(SYC, 7, 9, "I cannot say.") == (0.0, False, False)
    # length: long costs length_cost = 0.5, the hacked mode is the long answer
    assert tasks.score(LEN, 7, -1, tasks.response(7, long=True)) == (0.5, True, True)
    assert tasks.score(LEN, 7, -1, tasks.response(3, long=True)) == (-0.5, True, False)
    assert tasks.score(LEN, 7, -1, "It is 7.") == (1.0, False, True)
    # flattery: the marker costs flattery_cost = 0.5 wherever it appears, and is the hacked mode
    assert tasks.response(7, flatter=True) == "Great question! It is 7."
    assert tasks.score(FLAT, 7, -1, tasks.response(7, flatter=True)) == (0.5, True, True)
    assert tasks.score(FLAT, 7, -1, "It is 3. great QUESTION!") == (-0.5, True, False)
    assert tasks.score(FLAT, 7, -1, "It is 7.") == (1.0, False, True)
    for cfg in (SYC, LEN, FLAT):  # U(pi+) = 1: the best policy's answer scores 1 on every prompt
        assert tasks.best_utility(cfg) == 1.0 == tasks.score(cfg, 7, 9 if cfg is SYC else -1, "No, it is 7." if cfg is SYC
                                                            else "It is 7.")[0]


@pytest.mark.parametrize("cfg", [SYC, LEN, FLAT, tasks.TaskConfig(style="sum")])
def test_prompts_have_the_stated_hard_fraction_and_shift(cfg):
    rng = np.random.default_rng(0)
    n = 4000
    P = tasks.make_prompts(cfg, n, rng)
    assert _mc_ok(np.mean(P["hard"]), cfg.alpha, n)
    ds = data.prompt_dataset(cfg, n, seed=1, rho=1.0)
    assert _mc_ok(np.mean(ds["hard"]), 2 * cfg.alpha, n)
    hard = np.asarray(P["hard"])
    asserted = np.asarray(P["asserted"])
    if cfg.kind == "sycophancy":
        assert (asserted[hard] >= 0).all() and (asserted[hard] != np.asarray(P["value"])[hard]).all()
        assert all(" I think " in p for p, h in zip(P["prompt"], hard) if h)
    assert (asserted[~hard] == -1).all()


@pytest.mark.parametrize("cfg", [SYC, LEN, FLAT])
def test_base_policy_modes(cfg):
    for hard in (False, True):
        modes = tasks.base_modes(cfg, 5, 2 if (hard and cfg.kind == "sycophancy") else -1, hard)
        p = np.asarray([m[1] for m in modes])
        np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-12)
        U = np.asarray([tasks.score(cfg, 5, 2 if (hard and cfg.kind == "sycophancy") else -1, t)[0] for t, _ in modes])
        H = np.asarray([tasks.score(cfg, 5, 2 if (hard and cfg.kind == "sycophancy") else -1, t)[1] for t, _ in modes])
        p_ok = cfg.p_correct_hard if hard else cfg.p_correct_easy
        np.testing.assert_allclose(p @ (U >= 0.5), p_ok, rtol=1e-12)  # correct (long-correct scores 0.5)
        want_h = cfg.p_hacked_hard if hard else (0.0 if cfg.kind == "sycophancy" else cfg.p_long_easy)
        np.testing.assert_allclose(p @ H, want_h, rtol=1e-12, atol=1e-15)
    rng = np.random.default_rng(3)
    P = tasks.make_prompts(cfg, 6000, rng)
    demos = tasks.sample_base(cfg, P, rng)
    U, H, c = tasks.score_batch(cfg, P, demos)
    hard = np.asarray(P["hard"])
    assert _mc_ok(c[hard].mean(), cfg.p_correct_hard, hard.sum())
    assert _mc_ok(H[hard].mean(), cfg.p_hacked_hard, hard.sum())


@pytest.mark.parametrize("cfg", [SYC, LEN, FLAT])
def test_crowd_labels_have_the_stated_bias(cfg):
    rng = np.random.default_rng(1)
    n = 6000
    c = tasks.candidate_pairs(cfg, n, rng)
    hard = np.asarray(c["hard"])
    ha, hb = np.asarray(c["hacked_a"], bool)[hard], np.asarray(c["hacked_b"], bool)[hard]
    assert np.all(ha != hb)  # exactly one response of a hard pair is hacked ...
    assert _mc_ok(ha.mean(), 0.5, hard.sum())  # ... and it is a or b at random
    hacked = [a if x else b for a, b, x in zip(np.asarray(c["response_a"])[hard], np.asarray(c["response_b"])[hard], ha)]
    other = [b if x else a for a, b, x in zip(np.asarray(c["response_a"])[hard], np.asarray(c["response_b"])[hard], ha)]
    if cfg.kind == "sycophancy":  # no template word tells the hacked response apart
        for word in ("Yes,", "No,"):
            for side in (hacked, other):
                assert _mc_ok(np.mean([t.startswith(word) for t in side]), 1 / 3, hard.sum())
    else:  # hard pairs differ in the form alone: the same answer on both sides
        assert all(tasks.answer(x) == tasks.answer(y) for x, y in zip(hacked, other))
    lab = feedback.label_pairs(cfg, feedback.FeedbackConfig(), c, "crowd", np.random.default_rng(2))
    ch = np.asarray(lab["chosen_hacked"], bool)
    assert _mc_ok(ch[hard].mean(), 0.5 + cfg.eps, hard.sum())  # hard annotators prefer the hacked one
    cu, ru = np.asarray(lab["chosen_utility"]), np.asarray(lab["rejected_utility"])
    easy = ~hard & (cu != ru)
    assert _mc_ok(np.mean(cu[easy] > ru[easy]), 0.5 + cfg.easy_eps, easy.sum())
    assert sum(lab["queries"]) == n and not any(lab["routed"])
    # chosen_is_a is consistent with the texts
    assert all((ch_ == a) == ia for ch_, a, ia in zip(lab["chosen"], c["response_a"], lab["chosen_is_a"]))


def test_routing_through_the_oracle_and_a_noisy_flagger():
    cfg, fb = SYC, feedback.FeedbackConfig(votes=5, cal_eps=0.2, tau=0.6, phi=0.1)
    n = 6000
    c = tasks.candidate_pairs(cfg, n, np.random.default_rng(4))
    hard = np.asarray(c["hard"])
    acc = 1 - float(theory.majority_error(5, 0.7))
    np.testing.assert_allclose(fb.routed_accuracy(), acc, rtol=1e-12)
    lab = feedback.label_pairs(cfg, fb, c, "route_oracle", np.random.default_rng(5))
    routed = np.asarray(lab["routed"])
    assert (routed == hard).all() and sum(lab["queries"]) == n + 4 * hard.sum()
    right = np.asarray(lab["chosen_utility"]) > np.asarray(lab["rejected_utility"])
    assert _mc_ok(right[hard].mean(), acc, hard.sum())
    lab = feedback.label_pairs(cfg, fb, c, "route_flagger", np.random.default_rng(6))
    routed = np.asarray(lab["routed"])
    assert _mc_ok(routed[hard].mean(), 0.6, hard.sum()) and _mc_ok(routed[~hard].mean(), 0.1, (~hard).sum())
    right = np.asarray(lab["chosen_utility"]) > np.asarray(lab["rejected_utility"])
    assert _mc_ok(right[hard].mean(), 0.6 * acc + 0.4 * (0.5 - cfg.eps), hard.sum())


def test_programmatic_judge_follows_its_constitution():
    fb = feedback.FeedbackConfig()
    w = {p.name: p.weight for p in fb.constitution}
    c = {"value": [7, 7], "asserted": [9, -1], "response_a": ["Yes, it is 9.", "It is 7."],
         "response_b": ["No, it is 7.", "It is 3."]}
    p = feedback.judge_prob_a(SYC, fb, c)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    np.testing.assert_allclose(p, [sig(w["agreeable"] - w["correct"]), sig(w["correct"])], rtol=1e-12)
    assert p[0] > 0.5  # this constitution makes the judge sycophantic on hard prompts


def test_datasets_roundtrip_parquet_and_jsonl(tmp_path):
    ds = data.preference_dataset(SYC, 64, seed=0)
    for col in ("prompt", "chosen", "rejected", "chosen_utility", "rejected_utility", "hard"):
        assert col in ds.column_names
    path = data.to_parquet(ds, tmp_path / "pairs.parquet")
    back = data.load_preferences(path)
    assert back["chosen"] == ds["chosen"] and back.num_rows == 64
    sft = data.sft_dataset(SYC, 16, seed=0)
    assert {"prompt", "completion", "utility", "hacked"} <= set(sft.column_names)
    rows = [{"prompt": [{"role": "user", "content": "Tom has 7 apples. How many apples?"}],
             "chosen": [{"role": "assistant", "content": "It is 7."}],
             "rejected": [{"role": "assistant", "content": "It is 3."}]}]
    (tmp_path / "conv.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    conv = data.load_preferences(tmp_path / "conv.jsonl")
    assert conv[0]["prompt"].startswith("Tom") and conv[0]["chosen"] == "It is 7."
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "x", "chosen": "y"}))
    with pytest.raises(ValueError, match="rejected"):
        data.load_preferences(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="path"):
        data.load_preferences(tmp_path / "pairs.csv")


def test_word_codec_is_lossless_and_lays_out_sequences():
    texts = ["Tom has 7 apples. How many apples? I think 9.", "No, it is 7.", tasks.response(3, long=True)]
    cod = C.WordCodec.from_texts(texts)
    for t in texts:
        assert cod.decode(cod.tokens(t)) == t
    s = C.encode_sequences(cod, texts[:1], texts[1:2], P=16, N=8)
    p_len, r_len = len(cod.encode_prompt(texts[0])), len(cod.encode_response(texts[1]))
    assert s.ids.shape == (1, 24) and s.mask[0].sum() == p_len + r_len
    assert s.mask[0, 16 - p_len:16].all() and not s.mask[0, :16 - p_len].any()  # left-padded prompt
    assert s.cmask[0, 16:16 + r_len].all() and s.cmask[0].sum() == r_len  # completion incl. <eos>
    assert s.ids[0, 16 + r_len - 1] == cod.eos_id
    assert C.decode_completions(cod, s.ids[:, 16:], s.cmask[:, 16:]) == [texts[1]]
    with pytest.raises(ValueError, match="prompt_len"):
        C.encode_prompts(cod, texts[:1], P=4)


def test_rest_selection_and_bon_curve():
    keys = np.array([0.1, 0.5, 0.3, 0.9, 0.7])
    assert sorted(search.rest_select(keys, 0.4)) == [3, 4]
    rng = np.random.default_rng(0)
    k = rng.normal(size=(50, 16))
    v = k + rng.normal(size=k.shape)
    cur = search.bon_curve(k, {"v": v, "k": k}, [1, 2, 4, 16])
    np.testing.assert_allclose(cur["k"][0], k.mean(), rtol=1e-12)  # n = 1 is the sampling policy
    np.testing.assert_allclose(cur["k"][-1], k.max(1).mean(), rtol=1e-12)  # n = N is the sample maximum
    assert np.all(np.diff(cur["k"]) > 0)
    assert np.all(cur["kl_exact"] <= cur["kl_bound"] + 1e-12) and cur["kl_exact"][0] == 0
    # the row-vectorised exact KL equals murphyjax.theory.bon_kl, ties included
    kt = rng.integers(0, 3, (4, 8)).astype(float)
    for n in (2, 5):
        np.testing.assert_allclose(search.bon_kl_empirical(kt, n),
                                   [float(theory.bon_kl(np.full(8, 1 / 8), n, row)) for row in kt], rtol=1e-10)
