"""An LLM prompted with a written constitution as a pairwise judge (Constitutional AI / RLAIF labels).

The judge sees the principles (system turn), the user's question and two responses, and is asked
"Which response follows the principles better? Answer A or B." Its preference is read from the
next-token distribution restricted to the two answer tokens, P(A) = softmax(l_A, l_B)_A, and averaged
over both presentation orders to cancel position bias:

    P(a preferred) = ( P_AB(A) + 1 - P_BA(A) ) / 2,   so  prob_a(q, a, b) = 1 - prob_a(q, b, a) exactly.

No sampling: the label channel is Bernoulli(P(a preferred)) (``feedback.label_pairs(..., prob_a=...)``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from murphyjax.align import core

QUESTION = ("Question: {q}\n\nResponse A: {a}\n\nResponse B: {b}\n\n"
            "Which response follows the principles better? Answer with a single letter, A or B.")


def constitution_text(principles) -> str:
    lines = [f"{i + 1}. {p.text}" for i, p in enumerate(principles)]
    return "You are a careful judge of answers. Judge by these principles:\n" + "\n".join(lines)


@functools.partial(jax.jit, static_argnames="graphdef")
def _last_logits(graphdef, params, ids, mask, choices):
    logits = core.forward(graphdef, params, ids, mask)[:, -1]
    return jax.nn.log_softmax(logits[:, choices], axis=-1)[:, 0]


class LLMJudge:
    """A chat LLM (``murphyjax.llm.Llama`` + its tokenizer) judging pairs against ``principles``."""

    def __init__(self, model, tokenizer, principles, batch: int = 8, bucket: int = 32):
        self.graphdef, self.params = core.split(model)
        self.tok = tokenizer
        self.system = constitution_text(principles)
        self.batch, self.bucket = batch, bucket
        ids = [tokenizer.encode(c, add_special_tokens=False) for c in ("A", "B")]
        if any(len(i) != 1 for i in ids):
            raise ValueError("the tokenizer must encode 'A' and 'B' as single tokens")
        self.choices = jnp.asarray([ids[0][0], ids[1][0]], jnp.int32)

    def render(self, q: str, a: str, b: str) -> list[int]:
        msgs = [{"role": "system", "content": self.system},
                {"role": "user", "content": QUESTION.format(q=q, a=a, b=b)}]
        text = self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def _log_p_first(self, rows: list[list[int]]) -> np.ndarray:
        """log P(first answer token) among {A, B} for each rendered prompt (left-padded, bucketed length)."""
        out = []
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        for s in range(0, len(rows), self.batch):
            chunk = rows[s:s + self.batch]
            L = -(-max(len(r) for r in chunk) // self.bucket) * self.bucket
            ids = np.full((self.batch, L), pad, np.int32)
            mask = np.zeros((self.batch, L), bool)
            for i, r in enumerate(chunk + [chunk[-1]] * (self.batch - len(chunk))):
                ids[i, L - len(r):], mask[i, L - len(r):] = r, True
            out.append(np.asarray(_last_logits(self.graphdef, self.params, ids, mask, self.choices))[:len(chunk)])
        return np.concatenate(out)

    def prob_a(self, prompts, responses_a, responses_b) -> np.ndarray:
        """P(judge prefers a) per pair, averaged over the two presentation orders."""
        ab = [self.render(q, a, b) for q, a, b in zip(prompts, responses_a, responses_b)]
        ba = [self.render(q, b, a) for q, a, b in zip(prompts, responses_a, responses_b)]
        lp = self._log_p_first(ab + ba)
        n = len(ab)
        return 0.5 * (np.exp(lp[:n]) + 1.0 - np.exp(lp[n:]))
