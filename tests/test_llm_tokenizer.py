"""The GGUF tokenizer rebuilt with `tokenizers` behind transformers' fast-tokenizer class."""

import pytest
from llm_utils import CHATML, tiny_vocab

from murphyjax.llm.tokenizer import build_bpe_tokenizer, tokenizer_from_gguf

TOKENS, TYPES, MERGES = tiny_vocab()


def tok_of(pre="smollm", **kw):
    return build_bpe_tokenizer(TOKENS, MERGES, TYPES, pre=pre, bos_id=1, eos_id=2, pad_id=0,
                               chat_template=CHATML, **kw)


def test_bpe_merges_and_individual_digits():
    tok = tok_of()
    ids = tok("hello world 12")["input_ids"]
    assert [TOKENS[i] for i in ids] == ["hello", "Ġworld", "Ġ", "1", "2"]  # smollm: digits one by one
    assert [TOKENS[i] for i in tok_of(pre="default")("hello world 12")["input_ids"]] == ["hello", "Ġworld", "Ġ", "12"]


def test_byte_level_round_trip_of_unicode_and_whitespace():
    tok = tok_of()
    text = "héllo  wörld\n\t🙂 ∑ 3.14"
    assert tok.decode(tok(text)["input_ids"]) == text


def test_special_tokens_and_chat_template():
    tok = tok_of()
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 0)
    msgs = [{"role": "user", "content": "hello"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert ids[0] == 1 and ids.count(2) == 1 and TOKENS.index("hello") in ids  # specials are single ids
    assert tok.decode(ids, skip_special_tokens=True) == "user\nhello\nassistant\n"


def test_from_gguf_file(tmp_path):
    from llm_utils import write_gguf

    from murphyjax.llm import LlamaConfig, init
    from murphyjax.llm.weights import model_to_arrays

    cfg = LlamaConfig.tiny(vocab_size=len(TOKENS), num_layers=1)
    write_gguf(tmp_path / "t.gguf", model_to_arrays(init(cfg)), cfg)
    tok = tokenizer_from_gguf(tmp_path / "t.gguf")
    assert tok("hello world 12")["input_ids"] == tok_of()("hello world 12")["input_ids"]
    assert tok.chat_template == CHATML and tok.eos_token == "<|im_end|>"


def test_unsupported_pre_tokenizer():
    with pytest.raises(ValueError, match="not supported"):
        tok_of(pre="qwen2")
