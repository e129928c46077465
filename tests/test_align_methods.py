"""The alignment methods through the full model path, on a tiny random Llama (murphyjax.align)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from murphyjax.align import codec as C
from murphyjax.align import core, evaluate, loops, preference, rl, search, tasks
from murphyjax.llm import LlamaConfig, init
from murphyjax.train import OptimizerConfig

CFG = tasks.TaskConfig()
P, N = 16, 8


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    c = tasks.candidate_pairs(tasks.TaskConfig(alpha=0.999), 64, rng)
    # hard prompts; a = "Yes, it is w." (agreeing with the user's wrong w), b = "No, it is v." (correct): two
    # forms a reward model tells apart from the surface
    c["response_a"] = [tasks.response(w, agree=True) for w in c["asserted"]]
    c["response_b"] = [tasks.response(v, disagree=True) for v in c["value"]]
    prompts = tasks.make_prompts(CFG, 32, rng)
    extra = [tasks.response(v, **kw) for v in range(10) for kw in ({}, {"agree": True}, {"disagree": True})]
    cod = C.WordCodec.from_texts(c["prompt"] + c["response_a"] + c["response_b"] + prompts["prompt"] + extra)
    lcfg = LlamaConfig.tiny(vocab_size=cod.vocab_size, hidden_size=32, intermediate_size=64, num_layers=2,
                            num_heads=4, num_kv_heads=2, head_dim=8, max_seq_len=P + N, scan_layers=False)
    g, params = core.split(init(lcfg, 0))
    A = C.encode_sequences(cod, c["prompt"], c["response_a"], P, N)
    B = C.encode_sequences(cod, c["prompt"], c["response_b"], P, N)
    pid, pm = C.encode_prompts(cod, prompts["prompt"], P)
    return {"cod": cod, "g": g, "params": params, "A": A, "B": B, "c": c, "prompts": {**prompts, "ids": pid, "mask": pm},
            "d": lcfg.hidden_size}


def _pairs(w, n=8):
    A, B = w["A"], w["B"]
    return {k: np.concatenate([getattr(A, f)[:n], getattr(B, f)[:n]]) for k, f in (("ids", "ids"), ("mask", "mask"),
                                                                                    ("cmask", "cmask"))}


def test_params_and_activations_are_float32(world):
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(world["params"]))
    b = _pairs(world)
    assert core.forward(world["g"], world["params"], b["ids"], b["mask"]).dtype == jnp.float32
    assert core.reward_scores(world["g"], {"lm": world["params"], "head": core.init_head(world["d"])},
                              b["ids"], b["mask"]).dtype == jnp.float32


def test_completion_logps_equal_the_samplers_and_a_manual_softmax(world):
    g, p = world["g"], world["params"]
    out = core.rollout(g, p, world["prompts"]["ids"][:4], world["prompts"]["mask"][:4], jax.random.key(0),
                       core.SamplingConfig(max_new_tokens=N, stop_tokens=world["cod"].stop_ids))
    ids, mask, cm = out.sequences()
    lp = core.completion_logps(core.forward(g, p, ids, mask), ids, cm)
    np.testing.assert_allclose(np.asarray(lp)[:, P:], np.asarray(out.logprobs), atol=2e-5)
    logits = np.asarray(core.forward(g, p, ids, mask), np.float64)
    manual = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    t = 3 + P
    for b in range(4):
        if cm[b, t]:
            np.testing.assert_allclose(lp[b, t], manual[b, t - 1, ids[b, t]], rtol=1e-5)


def test_dpo_is_log2_and_kl_is_zero_at_initialisation(world):
    g, p = world["g"], world["params"]
    b = _pairs(world)
    for kind, want in (("dpo", math.log(2)), ("fdpo", math.log(2)), ("ipo", 1.0 / (4 * 0.5**2))):
        loss, m = preference.pair_loss(p, b, 0.5 if kind == "ipo" else 0.1, p, graphdef=g,
                                       loss=preference.PreferenceLoss(kind))
        np.testing.assert_allclose(float(loss), want, rtol=1e-6)
        assert float(m["rewards/margins"]) == 0.0
    kl = core.kl_to_reference(g, p, p, b["ids"], b["mask"], b["cmask"])
    for k in ("exact", "k1", "k3"):
        np.testing.assert_allclose(np.asarray(kl[k]), 0.0, atol=1e-6)


def test_exact_kl_along_samples_matches_numpy(world):
    g, p = world["g"], world["params"]
    q = jax.tree.map(lambda x: x * 1.3, p)
    b = _pairs(world, 2)
    kl = core.kl_to_reference(g, q, p, b["ids"], b["mask"], b["cmask"], 0.8)
    lq = np.asarray(core.forward(g, q, b["ids"], b["mask"]), np.float64) / 0.8
    lr = np.asarray(core.forward(g, p, b["ids"], b["mask"]), np.float64)
    lq -= np.log(np.exp(lq).sum(-1, keepdims=True))
    lr -= np.log(np.exp(lr).sum(-1, keepdims=True))
    per = (np.exp(lq) * (lq - lr)).sum(-1)[:, :-1] * b["cmask"][:, 1:]
    np.testing.assert_allclose(np.asarray(kl["exact"]), per.sum(1), rtol=1e-4)
    assert np.all(np.asarray(kl["exact"]) > 0) and np.all(np.asarray(kl["k3"]) >= 0)


def test_dpo_training_moves_the_policy_not_the_reference_and_precomputed_ref_matches(world):
    g, p = world["g"], world["params"]
    ref = core.copy_tree(p)
    before = jax.tree.map(np.asarray, ref)
    b = _pairs(world)
    opt = OptimizerConfig(learning_rate=1e-2)
    state = preference.new_state(p, opt)
    lp = preference.reference_logps(g, ref, C.Seqs(b["ids"], b["mask"], b["cmask"]), batch=16)
    margins = []
    for _ in range(5):
        # the reference forward inside the loss (TRL's default) equals the precomputed reference log-probs
        in_step, _ = preference.pair_loss(state.params, b, 0.1, ref, graphdef=g, loss=preference.PreferenceLoss())
        state, m = preference.preference_step(state, dict(b, ref_logps=lp), np.float32(0.1), graphdef=g, opt=opt,
                                              loss=preference.PreferenceLoss())
        np.testing.assert_allclose(float(m["loss"]), float(in_step), rtol=1e-5)
        margins.append(float(m["rewards/margins"]))
    assert margins[-1] > margins[0] + 0.1 and float(m["loss"]) < math.log(2)
    for a, x in zip(jax.tree.leaves(before), jax.tree.leaves(ref)):
        np.testing.assert_array_equal(a, np.asarray(x))  # the reference never moves
    moved = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref)))
    assert moved > 1e-3


def test_maps_margin_shifts_the_dpo_target(world):
    g, p = world["g"], world["params"]
    b = _pairs(world, 4)
    ref = jax.tree.map(lambda x: x * 1.01, p)
    l0, _ = preference.pair_loss(p, b, 0.1, ref, graphdef=g, loss=preference.PreferenceLoss())
    l1, m1 = preference.pair_loss(p, dict(b, margin=jnp.full(4, -1.0)), 0.1, ref, graphdef=g,
                                  loss=preference.PreferenceLoss())
    assert float(l1) < float(l0)  # a flagged chosen response (margin < 0) needs less push


def test_reward_model_starts_at_log2_and_learns_the_labels(world):
    g, p, A, B = world["g"], world["params"], world["A"], world["B"]
    b = dict(_pairs(world, 32))
    l0, _ = preference.reward_loss({"lm": p, "head": core.init_head(world["d"])}, b, graphdef=g)
    np.testing.assert_allclose(float(l0), math.log(2), rtol=1e-6)
    # "a" (the agreeing answer of a hard prompt) is chosen in every pair: the proxy learns to prefer it
    rm, m = loops.train_reward_model(g, p, world["d"], C.Seqs(*(x[:32] for x in A)), C.Seqs(*(x[:32] for x in B)),
                                     steps=20, batch_size=16, opt=OptimizerConfig(learning_rate=3e-3))
    acc, ra, rb = loops.reward_accuracy(g, rm, C.Seqs(*(x[32:] for x in A)), C.Seqs(*(x[32:] for x in B)), batch=32)
    assert acc["label_accuracy"] == 1.0 and m["loss"] < 0.3  # also on the 32 held-out pairs


def test_sft_lowers_the_nll(world):
    g, p, A = world["g"], world["params"], world["A"]
    params, hist = loops.train_sft(g, p, A, steps=20, batch_size=16, opt=OptimizerConfig(learning_rate=3e-3),
                                   eval_at=(1, 20), on_eval=lambda t, q: {})
    assert hist[-1]["train/loss"] < hist[0]["train/loss"] - 0.5


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_rl_raises_the_proxy(world, algo):
    g, p, cod = world["g"], world["params"], world["cod"]
    target = cod.stoi[" is"]

    def reward(samples, index):  # a proxy: the fraction of " is" tokens in the completion
        t, m = np.asarray(samples.tokens), np.asarray(samples.mask)
        return ((t == target) & m).sum(1) / np.maximum(m.sum(1), 1)

    cfg = rl.RLConfig(algo=algo, group_size=4)
    opt = OptimizerConfig(learning_rate=1e-2)
    state = rl.rl_state(p, cfg, opt, world["d"])
    pr = world["prompts"]
    scores = []
    for it in range(8):
        rows = np.arange(8) if algo == "grpo" else np.arange(32)
        state, m, _ = rl.rl_iteration(state, p, pr["ids"][rows], pr["mask"][rows], reward, jax.random.key(it),
                                      np.float32(0.01), graphdef=g, cfg=cfg, opt=opt, max_new_tokens=N,
                                      stop_ids=cod.stop_ids, pad_id=cod.pad_id)
        scores.append(m["score"])
        assert m["kl_estimator"] == ("k1" if algo == "ppo" else "k3") and f"kl_{cfg.estimator}" in m
        assert m["exact_kl"] >= 0
    assert np.mean(scores[-3:]) > np.mean(scores[:3]) + 0.05, scores


def test_rest_iteration_raises_the_proxy_of_its_samples(world):
    g, p, cod, pr = world["g"], world["params"], world["cod"], world["prompts"]
    scfg = core.SamplingConfig(max_new_tokens=N, stop_tokens=cod.stop_ids)
    idx = np.repeat(np.arange(32), 4)

    def grow(params, key):  # proxy: the fraction of even token ids in the completion (spread out at random init)
        seqs, toks, tm = evaluate.generate(g, params, pr["ids"][idx], pr["mask"][idx], key, scfg, 128)
        return seqs, ((toks % 2 == 0) & tm).sum(1) / np.maximum(tm.sum(1), 1)

    seqs, r0 = grow(p, jax.random.key(0))
    keep = search.rest_select(r0, 0.25)
    params, _ = loops.train_sft(g, p, C.Seqs(*(x[keep] for x in seqs)), steps=15, batch_size=16,
                                opt=OptimizerConfig(learning_rate=3e-3))
    _, r1 = grow(params, jax.random.key(1))
    assert r1.mean() > r0.mean() + 0.05


def test_evaluate_reports_gap_ingredients(world):
    g, p, cod, pr = world["g"], world["params"], world["cod"], world["prompts"]
    rm = {"lm": p, "head": {"w": jnp.ones(world["d"], jnp.float32) * 0.1, "b": jnp.zeros((), jnp.float32)}}

    def score_texts(texts, index):
        U, H, _ = tasks.score_batch(CFG, pr, texts, index)
        return U, H

    s, arrays = evaluate.evaluate(g, p, p, pr, pr["ids"], pr["mask"], codec=cod, score_texts=score_texts, rm_graphdef=g,
                                  rm_params=rm, key=jax.random.key(0), max_new_tokens=N, batch=16)
    assert s["n"] == 64 and len(arrays["texts"]) == 64  # two samples per prompt
    np.testing.assert_allclose(s["kl_exact"], 0.0, atol=1e-6)  # the policy is the reference
    for k in ("proxy", "true", "hacked", "drift", "drift_se", "drift_pooled", "true_hard", "entropy", "length"):
        assert np.isfinite(s[k]) or k in ("true_hard",), k
    # the paired drift estimator is unbiased for the within-prompt covariance: a synthetic check
    rng = np.random.default_rng(0)
    h = rng.random(20000) < 0.3
    r = 2.0 * h + rng.normal(size=h.size)  # Cov(H, r | x) = 2 * 0.3 * 0.7 = 0.42 for every x
    d, se = evaluate.paired_drift(h, r)
    assert abs(d - 0.42) < 4 * se


def test_param_files_roundtrip(world, tmp_path):
    p = world["params"]
    core.save_params(tmp_path / "p.safetensors", p)
    q = core.load_params(tmp_path / "p.safetensors", p)
    for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))



def test_sliced_output_projection_gives_the_same_log_probs(world):
    g, p = world["g"], world["params"]
    b = _pairs(world)
    full = core.completion_sums(g, p, b["ids"], b["mask"], b["cmask"])
    sliced = core.completion_sums(g, p, b["ids"], b["mask"], b["cmask"], prompt_len=P)
    np.testing.assert_allclose(np.asarray(sliced), np.asarray(full), rtol=1e-6, atol=1e-6)


def test_reward_model_on_cached_trunk_features_equals_the_whole_stack(world):
    """trainable_layers = 1 of 2: the loop trains the top layer on the frozen trunk's activations computed
    once; the same parameters as running every step through the whole stack."""
    import dataclasses

    import optax

    from murphyjax.llm import init

    g, p, A, B = world["g"], world["params"], world["A"], world["B"]
    cfg = dataclasses.replace(core.merge(g, p).config, trainable_layers=1)
    g1, _ = core.split(init(cfg, 0))
    opt = OptimizerConfig(learning_rate=3e-3)
    sub = lambda s: C.Seqs(*(x[:32] for x in s))  # noqa: E731
    rm, _ = loops.train_reward_model(g1, p, world["d"], sub(A), sub(B), steps=6, batch_size=8, opt=opt)
    state = preference.new_state({"lm": p, "head": core.init_head(world["d"])}, opt, 0)
    data = preference.pair_arrays(sub(A), sub(B))
    from murphyjax.train import batch_at

    for t in range(6):  # no features: every step runs both layers
        state, _ = preference.reward_step(state, preference.pair_batch(batch_at(data, t, 8, 1, 0)), graphdef=g1, opt=opt)
    for a, b in zip(jax.tree.leaves(rm), jax.tree.leaves(state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=1e-6)
    frozen = jax.tree.leaves(core.merge(g1, rm["lm"]).blocks.unstacked()[0])
    for a, b in zip(frozen, jax.tree.leaves(core.merge(g, p).blocks.unstacked()[0])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the frozen layer did not move
    assert optax.tree.norm(jax.tree.map(lambda a, b: a - b, rm["head"], core.init_head(world["d"]))) > 0


def test_dpo_on_cached_trunk_features_equals_the_whole_stack(world):
    import dataclasses

    from murphyjax.llm import init
    from murphyjax.train import batch_at

    g, p, A, B = world["g"], world["params"], world["A"], world["B"]
    g1, _ = core.split(init(dataclasses.replace(core.merge(g, p).config, trainable_layers=1), 0))
    sub = lambda s: C.Seqs(*(x[:16] for x in s))  # noqa: E731
    ra, rb = preference.reference_logps(g, p, sub(A), 16), preference.reference_logps(g, p, sub(B), 16)
    opt, loss = OptimizerConfig(learning_rate=1e-2), preference.PreferenceLoss("dpo")
    pol, _ = loops.train_preference(g1, p, ra, rb, sub(A), sub(B), loss=loss, beta=0.1, steps=4, batch_size=8, opt=opt,
                                    prompt_len=P)
    state = preference.new_state(p, opt, 0)
    data = preference.pair_arrays(sub(A), sub(B), ref_c=ra, ref_r=rb, margin=np.zeros(16, np.float32))
    for t in range(4):
        state, _ = preference.preference_step(state, preference.pair_batch(batch_at(data, t, 8, 1, 0)), np.float32(0.1),
                                              graphdef=g1, opt=opt, loss=loss, prompt_len=P)
    for a, b in zip(jax.tree.leaves(pol), jax.tree.leaves(state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=1e-6)
    moved = [float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(jax.tree.leaves(pol), jax.tree.leaves(p))]
    assert max(moved) > 0


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_rl_on_a_shared_trunk_equals_the_whole_stack(world, algo, monkeypatch):
    """trainable_layers = 1 of 2: the rollout batch's trunk activations are computed once and every
    forward of the policy and the reference runs the top layer alone, with logits only where completion
    tokens are predicted; two iterations end at the parameters of the whole-stack path."""
    import dataclasses

    g, p, cod = world["g"], world["params"], world["cod"]
    g1, _ = core.split(init(dataclasses.replace(core.merge(g, p).config, trainable_layers=1), 0))
    target = cod.stoi[" is"]

    def reward(samples, index):
        t, m = np.asarray(samples.tokens), np.asarray(samples.mask)
        return ((t == target) & m).sum(1) / np.maximum(m.sum(1), 1)

    cfg = rl.RLConfig(algo=algo, group_size=2)
    opt = OptimizerConfig(learning_rate=1e-2)
    pr = world["prompts"]

    def run():
        state = rl.rl_state(p, cfg, opt, world["d"])
        for it in range(2):
            state, m, _ = rl.rl_iteration(state, p, pr["ids"][:8], pr["mask"][:8], reward, jax.random.key(it),
                                          np.float32(0.05), graphdef=g1, cfg=cfg, opt=opt, max_new_tokens=N,
                                          stop_ids=cod.stop_ids, pad_id=cod.pad_id)
        return state.params, m

    assert core.shared_trunk(g1, p, p) == 1
    shared, m1 = run()
    calls = []
    real = core.hidden
    monkeypatch.setattr(core, "shared_trunk", lambda *a: 0)
    monkeypatch.setattr(core, "hidden", lambda *a, **k: calls.append(1) or real(*a, **k))
    jax.clear_caches()
    whole, m2 = run()
    assert calls  # the whole-stack path ran (freshly traced)
    for a, b in zip(jax.tree.leaves(shared), jax.tree.leaves(whole)):  # float32 round-off through two updates
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=1e-5)
    for k in ("exact_kl", f"kl_{cfg.estimator}", "score"):
        np.testing.assert_allclose(m1[k], m2[k], rtol=1e-4, atol=1e-6, err_msg=k)
    lower = jax.tree.leaves(shared["lm"]["blocks"]["layers"][0])
    assert all(np.array_equal(a, b) for a, b in zip(lower, jax.tree.leaves(p["blocks"]["layers"][0])))
