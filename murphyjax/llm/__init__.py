"""LLM policies in Flax NNX: a Llama-family model, offline pretrained weights, sampling with a KV cache.

    model, tok = load_pretrained(path)            # .gguf file or Hugging Face folder, no pickle
    out = sample(model, ids, mask, key, SamplingConfig(temperature=0.7, top_p=0.9))
    lp = sequence_logprobs(model, *out.sequences())   # == out.logprobs (model log-probs at T=1)

Training, sharding and checkpoints live in ``murphyjax.train``, ``murphyjax.sharding`` and
``murphyjax.checkpoint``; ``murphyjax models fetch smollm2-135m`` downloads a real model.
"""

from murphyjax.llm.model import KVCache, Llama, LlamaConfig, decode, forward, init, positions_from_mask
from murphyjax.llm.sampling import (SamplingConfig, Samples, generate_text, left_align, sample,
                                    hidden_logprobs, sequence_logprobs, token_logprobs)
from murphyjax.llm.tokenizer import tokenizer_from_gguf
from murphyjax.llm.weights import ModelFileError, load_pretrained, save_hf

__all__ = ["KVCache", "Llama", "LlamaConfig", "ModelFileError", "decode", "forward", "init", "SamplingConfig",
           "Samples", "generate_text", "left_align", "load_pretrained", "positions_from_mask", "sample", "save_hf",
           "sequence_logprobs", "token_logprobs", "hidden_logprobs", "tokenizer_from_gguf"]
