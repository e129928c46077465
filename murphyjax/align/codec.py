"""Text <-> token ids for the alignment tasks, and the fixed (prompt | completion) array layout.

Two codecs share one interface (``encode_prompt``, ``encode_response``, ``decode``, ``pad_id``,
``stop_ids``, ``vocab_size``):

* ``WordCodec``: a lossless word-level vocabulary for a tiny policy trained from scratch. Tokens carry
  their leading space (`` is``), digits are single tokens, so ``decode(encode(t)) == t``. A prompt is
  ``<bos> prompt <sep>``; a response ends with ``<eos>``.
* ``ChatCodec``: a Hugging Face tokenizer with a chat template (SmolLM2): the prompt is the user turn
  rendered with ``add_generation_prompt=True``; the response is the assistant text followed by the
  template's end-of-turn token (``<|im_end|>``), which is also the stop token.

Layout of every sequence batch (training pairs, rollouts, evaluation): ``P`` prompt slots left-padded,
then ``N`` completion slots right-padded, as ``murphyjax.llm.Samples.sequences()`` lays out samples, so
one compiled program serves sampled and dataset sequences alike.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

_WORD = re.compile(r" ?\d| ?[A-Za-z]+| ?[^\w\s]|\s+")
SPECIALS = ("<pad>", "<bos>", "<eos>", "<sep>", "<unk>")


class WordCodec:
    """Lossless word-level codec over a closed vocabulary (built from example texts)."""

    pad_id, bos_id, eos_id, sep_id, unk_id = range(5)

    def __init__(self, vocab: list[str]):
        self.itos = list(SPECIALS) + [t for t in vocab if t not in SPECIALS]
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def from_texts(cls, texts) -> "WordCodec":
        toks = set()
        for t in texts:
            toks.update(_WORD.findall(t))
        for d in range(10):  # every digit, with and without a leading space
            toks.update((str(d), f" {d}"))
        return cls(sorted(toks))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def stop_ids(self) -> tuple[int, ...]:
        return (self.eos_id,)

    def tokens(self, text: str) -> list[int]:
        return [self.stoi.get(t, self.unk_id) for t in _WORD.findall(text)]

    def encode_prompt(self, text: str) -> list[int]:
        return [self.bos_id] + self.tokens(text) + [self.sep_id]

    def encode_response(self, text: str) -> list[int]:
        return self.tokens(text) + [self.eos_id]

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids if int(i) >= len(SPECIALS))


class ChatCodec:
    """A Hugging Face tokenizer with a chat template (e.g. SmolLM2-Instruct's ChatML)."""

    def __init__(self, tokenizer, system: str | None = None):
        self.tok = tokenizer
        self.system = system
        end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        if end is None or end == tokenizer.unk_token_id:
            end = tokenizer.eos_token_id
        self.end_id = int(end)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
        stops = {self.end_id}
        if tokenizer.eos_token_id is not None:
            stops.add(int(tokenizer.eos_token_id))
        self.stop_ids = tuple(sorted(stops))

    @property
    def vocab_size(self) -> int:
        return len(self.tok)

    def render_prompt(self, text: str) -> str:
        msgs = ([{"role": "system", "content": self.system}] if self.system else []) + [{"role": "user", "content": text}]
        return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    def encode_prompt(self, text: str) -> list[int]:
        return list(self.tok(self.render_prompt(text), add_special_tokens=False)["input_ids"])

    def encode_response(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"]) + [self.end_id]

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True).strip()


class Seqs(NamedTuple):
    """(B, P + N) arrays: token ids, attention mask, completion mask (tokens that are scored)."""

    ids: np.ndarray
    mask: np.ndarray
    cmask: np.ndarray


def encode_prompts(codec, prompts, P: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded prompt ids (n, P) int32 and mask; a ValueError names any prompt longer than P."""
    ids = np.full((len(prompts), P), codec.pad_id, np.int32)
    mask = np.zeros((len(prompts), P), bool)
    for i, p in enumerate(prompts):
        t = codec.encode_prompt(p)
        if len(t) > P:
            raise ValueError(f"prompt_len: prompt {i} has {len(t)} tokens > {P}: {p[:60]!r}")
        ids[i, P - len(t):] = t
        mask[i, P - len(t):] = True
    return ids, mask


def encode_sequences(codec, prompts, responses, P: int, N: int) -> Seqs:
    """Prompt (left-padded to P) + response (right-padded to N, end token included)."""
    pid, pm = encode_prompts(codec, prompts, P)
    rid = np.full((len(prompts), N), codec.pad_id, np.int32)
    rm = np.zeros((len(prompts), N), bool)
    for i, r in enumerate(responses):
        t = codec.encode_response(r)
        if len(t) > N:
            raise ValueError(f"completion_len: response {i} has {len(t)} tokens > {N}: {r[:60]!r}")
        rid[i, :len(t)] = t
        rm[i, :len(t)] = True
    return Seqs(np.concatenate([pid, rid], 1), np.concatenate([pm, rm], 1),
                np.concatenate([np.zeros_like(pm), rm], 1))


def decode_completions(codec, tokens, mask) -> list[str]:
    """Texts of sampled completions (stop token and padding dropped)."""
    tokens, mask = np.asarray(tokens), np.asarray(mask, bool)
    stops = set(codec.stop_ids)
    return [codec.decode([t for t, m in zip(row, mr) if m and int(t) not in stops]) for row, mr in zip(tokens, mask)]


def max_lengths(codec, prompts, responses=()) -> tuple[int, int]:
    """Longest encoded prompt and response (for choosing P and N)."""
    P = max((len(codec.encode_prompt(p)) for p in prompts), default=1)
    N = max((len(codec.encode_response(r)) for r in responses), default=1)
    return P, N
