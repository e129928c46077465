"""Rebuild a GGUF file's tokenizer offline with ``tokenizers``, exposed as a transformers fast tokenizer.

Supported: ``tokenizer.ggml.model == "gpt2"`` (byte-level BPE) with pre-tokenizer ``smollm`` (digits split
one by one, then GPT-2 byte-level regex; SmolLM/SmolLM2) or ``default``/``gpt2`` (byte-level regex only).
Control tokens (token type 3) become special tokens, user-defined ones (type 4) added tokens. The chat
template stored in the file is attached, so ``tokenizer.apply_chat_template`` works.
"""

from __future__ import annotations

import os

_PRE_TOKENIZERS = ("smollm", "default", "gpt2", "gpt-2")
_CONTROL, _USER_DEFINED = 3, 4


def _fields(reader) -> dict:
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.")}


def build_bpe_tokenizer(tokens: list[str], merges: list[str], token_types: list[int] | None = None, *,
                        pre: str = "default", bos_id: int | None = None, eos_id: int | None = None,
                        unk_id: int | None = None, pad_id: int | None = None, chat_template: str | None = None,
                        add_bos: bool = False):
    """A ``PreTrainedTokenizerFast`` for a byte-level BPE vocabulary given as GGUF stores it.

    Args:
      tokens: the vocabulary, id order. merges: "left right" strings, rank order.
      token_types: GGUF token types (3 control -> special token, 4 user-defined -> added token).
      pre: GGUF pre-tokenizer name (see module docstring).
      bos_id, eos_id, unk_id, pad_id: special token ids (None: absent).
      chat_template: Jinja chat template. add_bos: prepend BOS when encoding.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if pre not in _PRE_TOKENIZERS:
        raise ValueError(f"tokenizer.ggml.pre {pre!r} is not supported; supported: {_PRE_TOKENIZERS}")
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if pre == "smollm" else byte_level)
    tok.decoder = decoders.ByteLevel()
    if add_bos and bos_id is not None:
        b = tokens[bos_id]
        tok.post_processor = processors.TemplateProcessing(single=f"{b} $A", pair=f"{b} $A {b} $B",
                                                           special_tokens=[(b, bos_id)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    types = token_types or [1] * len(tokens)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == _CONTROL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t, ty in zip(tokens, types) if ty == _USER_DEFINED])
    name = lambda i: None if i is None else tokens[i]  # noqa: E731
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=name(bos_id), eos_token=name(eos_id),
                                   unk_token=name(unk_id), pad_token=name(pad_id), padding_side="left",
                                   clean_up_tokenization_spaces=False)
    if chat_template:
        fast.chat_template = chat_template
    return fast


def tokenizer_from_gguf(reader_or_path):
    """The tokenizer stored in a GGUF file (a ``gguf.GGUFReader`` or a path)."""
    if isinstance(reader_or_path, (str, os.PathLike)):
        from gguf import GGUFReader
        reader_or_path = GGUFReader(str(reader_or_path))
    f = _fields(reader_or_path)
    model = f.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(f"tokenizer.ggml.model {model!r} is not supported (only byte-level BPE 'gpt2')")
    opt = lambda k: None if f.get(k) is None else int(f[k])  # noqa: E731
    return build_bpe_tokenizer(
        list(f["tokenizer.ggml.tokens"]), list(f.get("tokenizer.ggml.merges", [])),
        [int(t) for t in f["tokenizer.ggml.token_type"]] if "tokenizer.ggml.token_type" in f else None,
        pre=f.get("tokenizer.ggml.pre", "default"), bos_id=opt("tokenizer.ggml.bos_token_id"),
        eos_id=opt("tokenizer.ggml.eos_token_id"), unk_id=opt("tokenizer.ggml.unknown_token_id"),
        pad_id=opt("tokenizer.ggml.padding_token_id"), chat_template=f.get("tokenizer.chat_template"),
        add_bos=bool(f.get("tokenizer.ggml.add_bos_token", False)))
