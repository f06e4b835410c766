"""A tiny random Llama: fast enough to train in unit and integration tests, never trained."""

from __future__ import annotations

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

CHARS = "0123456789+-*/=()<>.,:;?! {}\\\nabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character of CHARS: ids 0 pad, 1 eos (also for unknown characters)."""
    vocab = {"<pad>": 0, "<eos>": 1} | {c: i + 2 for i, c in enumerate(CHARS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def tiny_llama(
    seed: int = 0, tokenizer: PreTrainedTokenizerBase | None = None
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """A random 2-layer, width-64 Llama, in eval mode, for `tokenizer` (default: the character
    tokenizer); the same seed gives the same weights."""
    tokenizer = tokenizer or char_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id or tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval(), tokenizer
