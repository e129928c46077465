"""An LLM prompted with a written constitution as a pairwise judge (Constitutional AI / RLAIF labels).

Every mode returns P(a preferred) in [0, 1]; the label channel is Bernoulli(P(a preferred))
(``feedback.label_pairs(..., prob_a=...)``). No sampling: each probability is read from next-token
log-odds or sequence log-likelihoods. ``mode`` picks how (Bai et al. 2022, "Constitutional AI", Sec. 4.1
for the pairwise form; Kadavath et al. 2022, "Language models (mostly) know what they know", P(True),
for the yes/no forms):

* ``pairwise`` (default): the principles (system turn), the question and both responses, then
  "Which response follows the principles better? Answer A or B."; P_AB(A) = softmax(l_A, l_B)_A,
  averaged over both presentation orders to cancel position bias:
      P(a preferred) = ( P_AB(A) + 1 - P_BA(A) ) / 2.
* ``fewshot``: ``pairwise`` after worked judged examples (``FEWSHOT``: general-knowledge questions, not
  the tasks' prompt family) as earlier user / assistant turns.
* ``likelihood``: the constitution-prompted model's own choice between the two responses,
      P(a preferred) = pi(a | q) / ( pi(a | q) + pi(b | q) ) = sigmoid(log pi(a | q) - log pi(b | q)),
  pi the chat model with the principles as system turn (``core.sequence_logps``).
* ``verify``: each response alone, "Is this answer correct? Yes or No"; with p(y) = P(Yes | q, y)
  among {Yes, No} read independently for a and b,
      P(a preferred) = P(a right, b wrong | exactly one right) = sigmoid(logit p(a) - logit p(b)).
* ``principles``: each principle as a yes/no question about each response, f_i(y) = P(Yes) among
  {Yes, No}, combined with the principle weights as the programmatic judge does
  (``feedback.judge_prob_a``): t(y) = sum_i w_i f_i(y), P(a preferred) = sigmoid((t(a) - t(b)) / T).

The pointwise modes (``likelihood``, ``verify``, ``principles``) divide the score difference by
``temperature`` (default 1, where the formulas above hold exactly). In every mode
prob_a(q, a, b) = 1 - prob_a(q, b, a) (to float round-off).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from murphyjax.align import core

MODES = ("pairwise", "fewshot", "likelihood", "verify", "principles")

QUESTION = ("Question: {q}\n\nResponse A: {a}\n\nResponse B: {b}\n\n"
            "Which response follows the principles better? Answer with a single letter, A or B.")
VERIFY = "Question: {q}\n\nAnswer: {r}\n\nIs this answer correct? Answer with a single word, Yes or No."
PRINCIPLE = ("Question: {q}\n\nAnswer: {r}\n\nPrinciple: {p}\n\n"
             "Does the answer follow the principle? Answer with a single word, Yes or No.")
JUDGE = "You are a careful judge of answers."
# worked examples for ``fewshot``: (question, response A, response B, the verdict), one verdict of each letter
FEWSHOT = (("What is the capital of France?", "It is Rome.", "It is Paris.", "B"),
           ("How many legs does a dog have?", "It has four.", "It has three.", "A"))


def constitution_text(principles) -> str:
    lines = [f"{i + 1}. {p.text}" for i, p in enumerate(principles)]
    return f"{JUDGE} Judge by these principles:\n" + "\n".join(lines)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))  # tanh form: no overflow for large |x|


@functools.partial(jax.jit, static_argnames="graphdef")
def _last_log_odds(graphdef, params, ids, mask, choices):
    """l[choices[0]] - l[choices[1]] of the next-token logits after each (left-padded) row: the output
    projection runs at the last position only."""
    h, model = core.hidden(graphdef, params, ids, mask)
    logits = model.logits(h[:, -1])
    return logits[:, choices[0]] - logits[:, choices[1]]


class LLMJudge:
    """A chat LLM (``murphyjax.llm.Llama`` + its tokenizer) judging pairs against ``principles``.

    Args:
      model, tokenizer: the judge (a chat template is required).
      principles: ``feedback.Principle`` s (text and weight).
      mode: one of ``MODES`` (module docstring); ``pairwise`` is the original judge.
      batch: rows per compiled call; rows are sorted by length and padded to a multiple of ``bucket``.
      temperature: divides the score difference of the pointwise modes (> 0).
    """

    def __init__(self, model, tokenizer, principles, mode: str = "pairwise", batch: int = 8, bucket: int = 32,
                 temperature: float = 1.0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; got {temperature!r}")
        self.graphdef, self.params = core.split(model)
        self.tok = tokenizer
        self.principles = tuple(principles)
        self.system = constitution_text(self.principles)
        self.mode, self.batch, self.bucket, self.temperature = mode, batch, bucket, temperature
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        words = ("A", "B") if mode in ("pairwise", "fewshot") else ("Yes", "No") if mode != "likelihood" else ()
        self.choices = self._single_tokens(*words) if words else None

    def _single_tokens(self, *words) -> jax.Array:
        ids = [self.tok.encode(w, add_special_tokens=False) for w in words]
        if any(len(i) != 1 for i in ids):
            raise ValueError(f"mode {self.mode!r} needs the tokenizer to encode {words} as single tokens; got {ids}")
        return jnp.asarray([i[0] for i in ids], jnp.int32)

    # ----------------------------------------------------------------------- prompts
    def _chat(self, system: str, turns: list[tuple[str, str]]) -> list[int]:
        msgs = [{"role": "system", "content": system}] + [{"role": r, "content": c} for r, c in turns]
        text = self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def render(self, q: str, a: str, b: str) -> list[int]:
        """The pairwise prompt (with the worked examples first in ``fewshot`` mode)."""
        shots = FEWSHOT if self.mode == "fewshot" else ()
        turns = [t for sq, sa, sb, v in shots for t in (("user", QUESTION.format(q=sq, a=sa, b=sb)), ("assistant", v))]
        return self._chat(self.system, turns + [("user", QUESTION.format(q=q, a=a, b=b))])

    # ----------------------------------------------------------------------- forward passes
    def _chunks(self, rows: list[list[int]]):
        """(indices, ids, mask) of left-padded chunks of ``batch`` rows, shortest rows first; the last
        chunk is filled by repeating its final row (one compiled shape per length bucket)."""
        order = np.argsort([len(r) for r in rows], kind="stable")
        for s in range(0, len(rows), self.batch):
            idx = order[s:s + self.batch]
            chunk = [rows[i] for i in idx]
            L = -(-max(len(r) for r in chunk) // self.bucket) * self.bucket
            ids = np.full((self.batch, L), self.pad, np.int32)
            mask = np.zeros((self.batch, L), bool)
            for i, r in enumerate(chunk + [chunk[-1]] * (self.batch - len(chunk))):
                ids[i, L - len(r):], mask[i, L - len(r):] = r, True
            yield idx, ids, mask

    def _log_odds(self, rows: list[list[int]]) -> np.ndarray:
        """log P(choices[0]) - log P(choices[1]) of the next token after each rendered prompt."""
        out = np.zeros(len(rows))
        for idx, ids, mask in self._chunks(rows):
            out[idx] = np.asarray(_last_log_odds(self.graphdef, self.params, ids, mask, self.choices))[:len(idx)]
        return out

    def _response_logps(self, prefixes: list[list[int]], completions: list[list[int]]) -> np.ndarray:
        """Summed log-probs of each completion after its prefix."""
        rows = [p + c for p, c in zip(prefixes, completions)]
        out = np.zeros(len(rows))
        for idx, ids, mask in self._chunks(rows):
            cmask = np.zeros_like(mask)
            for i, j in enumerate(idx):
                cmask[i, ids.shape[1] - len(completions[j]):] = True
            out[idx] = np.asarray(core.sequence_logps(self.graphdef, self.params, ids, mask, cmask))[:len(idx)]
        return out

    # ----------------------------------------------------------------------- scores and preferences
    def scores(self, prompts, responses) -> np.ndarray:
        """The pointwise score t(q, y) of each response (pointwise modes only): log pi(y | q)
        (``likelihood``), logit P(Yes) (``verify``), sum_i w_i P_i(Yes) (``principles``)."""
        q, r = list(prompts), list(responses)
        if self.mode == "likelihood":
            prefixes = [self._chat(self.system, [("user", x)]) for x in q]
            full = [self._chat_with_answer(x, y) for x, y in zip(q, r)]
            if any(f[:len(p)] != p for p, f in zip(prefixes, full)):
                raise ValueError("the chat template must render the prompt as a prefix of the answered conversation")
            return self._response_logps(prefixes, [f[len(p):] for p, f in zip(prefixes, full)])
        if self.mode == "verify":
            return self._log_odds([self._chat(self.system, [("user", VERIFY.format(q=x, r=y))]) for x, y in zip(q, r)])
        if self.mode == "principles":
            rows = [self._chat(JUDGE, [("user", PRINCIPLE.format(q=x, r=y, p=p.text))])
                    for x, y in zip(q, r) for p in self.principles]
            f = _sigmoid(self._log_odds(rows)).reshape(len(q), len(self.principles))
            return f @ np.asarray([p.weight for p in self.principles], float)
        raise ValueError(f"scores needs a pointwise mode (likelihood, verify, principles); this judge's mode is {self.mode!r}")

    def _chat_with_answer(self, q: str, y: str) -> list[int]:
        """The conversation with ``y`` as the assistant's (finished) turn."""
        msgs = [{"role": "system", "content": self.system}, {"role": "user", "content": q},
                {"role": "assistant", "content": y}]
        text = self.tok.apply_chat_template(msgs, tokenize=False)
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def prob_a(self, prompts, responses_a, responses_b) -> np.ndarray:
        """P(judge prefers a) per pair, in [0, 1]; prob_a(q, a, b) = 1 - prob_a(q, b, a)."""
        q, a, b = list(prompts), list(responses_a), list(responses_b)
        n = len(q)
        if self.mode in ("pairwise", "fewshot"):
            lo = self._log_odds([self.render(*x) for x in zip(q, a, b)] + [self.render(*x) for x in zip(q, b, a)])
            return 0.5 * (_sigmoid(lo[:n]) + 1.0 - _sigmoid(lo[n:]))
        t = self.scores(q + q, a + b)
        return _sigmoid((t[:n] - t[n:]) / self.temperature)
