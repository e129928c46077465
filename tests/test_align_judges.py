"""The LLM judge (murphyjax.align.judges): plumbing on a tiny model, and SmolLM2-135M when it is cached."""

import jax
import numpy as np
import pytest

from llm_utils import CHATML, tiny_vocab
from murphyjax.align import core, feedback, judges, tasks
from murphyjax.llm import LlamaConfig, init
from murphyjax.llm.tokenizer import build_bpe_tokenizer

Q = ["What is 3+4?", "Tom has 7 apples. How many apples? I think 9."]
A, B = ["It is 7.", "Yes, it is 9."], ["It is 8.", "No, it is 7."]


def _tiny(yes_no: bool = True):
    """A 1-layer random Llama and a byte-level tokenizer (with "Yes" and "No" as single tokens when ``yes_no``)."""
    tokens, types, merges = tiny_vocab()
    if yes_no:
        extra = ["Y e", "Ye s", "N o"]
        tokens, types, merges = tokens + [m.replace(" ", "") for m in extra], types + [1] * 3, merges + extra
    tok = build_bpe_tokenizer(tokens, merges, types, bos_id=1, eos_id=2, pad_id=0, chat_template=CHATML)
    return init(LlamaConfig.tiny(vocab_size=len(tokens), num_layers=1, scan_layers=False), 0), tok


def _next_log_odds(model, ids, choices):
    """l[choices[0]] - l[choices[1]] after one unpadded row, by a plain forward pass."""
    g, p = core.split(model)
    x = np.asarray([ids], np.int32)
    logits = np.asarray(core.forward(g, p, x, np.ones_like(x, bool)))[0, -1]
    return logits[choices[0]] - logits[choices[1]]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, float)))


def test_judge_probabilities_are_order_symmetric_and_feed_the_label_channel():
    tokens, types, merges = tiny_vocab()
    tok = build_bpe_tokenizer(tokens, merges, types, bos_id=1, eos_id=2, pad_id=0, chat_template=CHATML)
    model = init(LlamaConfig.tiny(vocab_size=len(tokens), num_layers=1, scan_layers=False), 0)
    judge = judges.LLMJudge(model, tok, feedback.CONSTITUTION, batch=4)
    q = ["What is 3+4?", "Tom has 7 apples. How many apples? I think 9."]
    a, b = ["It is 7.", "Yes, it is 9."], ["It is 8.", "No, it is 7."]
    p = judge.prob_a(q, a, b)
    assert p.shape == (2,) and np.all((p > 0) & (p < 1))
    np.testing.assert_allclose(judge.prob_a(q, b, a), 1 - p, rtol=1e-5)  # position bias averaged out exactly
    assert "Respect the user's view" in judge.system
    c = tasks.candidate_pairs(tasks.TaskConfig(), 3, np.random.default_rng(0))
    lab = feedback.label_pairs(tasks.TaskConfig(), feedback.FeedbackConfig(), c, "judge", np.random.default_rng(1),
                               prob_a=judge.prob_a(c["prompt"], c["response_a"], c["response_b"]))
    assert len(lab["chosen"]) == 3 and sum(lab["queries"]) == 3


@pytest.mark.parametrize("mode", judges.MODES)
def test_every_mode_gives_order_symmetric_probabilities(mode):
    model, tok = _tiny()
    judge = judges.LLMJudge(model, tok, feedback.CONSTITUTION, mode=mode, batch=3)
    p = judge.prob_a(Q, A, B)
    assert p.shape == (2,) and np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(judge.prob_a(Q, B, A), 1 - p, atol=1e-5)
    np.testing.assert_allclose(judge.prob_a(Q[:1], A[:1], B[:1]), p[:1], atol=1e-5)  # batch composition: round-off only


def test_every_mode_matches_an_unpadded_recomputation():
    """pairwise / fewshot: (sigmoid(l_AB) + 1 - sigmoid(l_BA)) / 2; likelihood: sigmoid(log pi(a|q) - log pi(b|q));
    verify: sigmoid(logit p(a) - logit p(b)); principles: sigmoid(sum_i w_i (f_i(a) - f_i(b)) / T), each
    recomputed here from single unpadded forward passes."""
    model, tok = _tiny()
    g, params = core.split(model)
    fb = feedback.CONSTITUTION[:2]
    for mode in ("pairwise", "fewshot"):
        pw = judges.LLMJudge(model, tok, fb, mode=mode, batch=4)
        lo = lambda q, a, b: _next_log_odds(model, pw.render(q, a, b), pw.choices)
        want = [(_sigmoid(lo(q, a, b)) + 1 - _sigmoid(lo(q, b, a))) / 2 for q, a, b in zip(Q, A, B)]
        np.testing.assert_allclose(pw.prob_a(Q, A, B), want, rtol=1e-4)

    lik = judges.LLMJudge(model, tok, fb, mode="likelihood", batch=4)

    def log_pi(q, y):
        prefix, full = lik._chat(lik.system, [("user", q)]), lik._chat_with_answer(q, y)
        x = np.asarray([full], np.int32)
        lp = np.asarray(jax.nn.log_softmax(core.forward(g, params, x, np.ones_like(x, bool))[0], -1))
        return sum(lp[t - 1, full[t]] for t in range(len(prefix), len(full)))

    want = _sigmoid([log_pi(q, a) - log_pi(q, b) for q, a, b in zip(Q, A, B)])
    np.testing.assert_allclose(lik.prob_a(Q, A, B), want, rtol=1e-4)

    ver = judges.LLMJudge(model, tok, fb, mode="verify", batch=4)
    s = lambda q, y: _next_log_odds(model, ver._chat(ver.system, [("user", judges.VERIFY.format(q=q, r=y))]), ver.choices)
    np.testing.assert_allclose(ver.prob_a(Q, A, B), _sigmoid([s(q, a) - s(q, b) for q, a, b in zip(Q, A, B)]), rtol=1e-4)

    pri = judges.LLMJudge(model, tok, fb, mode="principles", batch=4, temperature=2.0)

    def t(q, y):
        return sum(p.weight * _sigmoid(_next_log_odds(model, pri._chat(judges.JUDGE, [
            ("user", judges.PRINCIPLE.format(q=q, r=y, p=p.text))]), pri.choices)) for p in fb)

    np.testing.assert_allclose(pri.scores(Q, A), [t(q, a) for q, a in zip(Q, A)], rtol=1e-4)
    np.testing.assert_allclose(pri.prob_a(Q, A, B), _sigmoid([(t(q, a) - t(q, b)) / 2.0 for q, a, b in zip(Q, A, B)]),
                               rtol=1e-4)


def test_fewshot_prompt_holds_the_worked_examples_before_the_pair():
    model, tok = _tiny()
    text = tok.decode(judges.LLMJudge(model, tok, feedback.CONSTITUTION, mode="fewshot").render(Q[0], A[0], B[0]))
    assert text.index(judges.FEWSHOT[0][0]) < text.index(judges.FEWSHOT[1][0]) < text.index(Q[0])


def test_bad_modes_and_tokenizers_are_named():
    model, tok = _tiny(yes_no=False)
    with pytest.raises(ValueError, match="mode must be one of"):
        judges.LLMJudge(model, tok, feedback.CONSTITUTION, mode="vote")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        judges.LLMJudge(model, tok, feedback.CONSTITUTION, mode="verify", temperature=0.0)
    with pytest.raises(ValueError, match="'Yes', 'No'.*single tokens"):
        judges.LLMJudge(model, tok, feedback.CONSTITUTION, mode="verify")
    with pytest.raises(ValueError, match="scores needs a pointwise mode"):
        judges.LLMJudge(model, tok, feedback.CONSTITUTION).scores(Q, A)


@pytest.mark.slow
def test_smollm2_judge_prefers_the_correct_answer():
    from murphyjax.llm import load_pretrained
    from murphyjax.llm.fetch import cached_path

    path = cached_path("smollm2-135m")
    if not path.exists():
        pytest.skip("SmolLM2-135M is not cached (murphyjax models fetch smollm2-135m)")
    model, tok = load_pretrained(path)
    judge = judges.LLMJudge(model, tok, feedback.CONSTITUTION[:1], batch=4)
    q = ["What is the capital of France?", "What is the capital of Japan?"]
    p = judge.prob_a(q, ["The capital of France is Paris.", "The capital of Japan is Tokyo."],
                     ["The capital of France is London.", "The capital of Japan is Berlin."])
    assert np.all(p > 0.5), p
