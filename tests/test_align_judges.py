"""The LLM judge (murphyjax.align.judges): plumbing on a tiny model, and SmolLM2-135M when it is cached."""

import numpy as np
import pytest

from llm_utils import CHATML, tiny_vocab
from murphyjax.align import feedback, judges, tasks
from murphyjax.llm import LlamaConfig, init
from murphyjax.llm.tokenizer import build_bpe_tokenizer


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
