"""Random Llama shapes for the GPU benchmarks: parameter counts and FLOPs per token.

No weights are downloaded: each shape builds a randomly initialised `LlamaForCausalLM` with the
real model's dimensions and vocabulary, so matmul sizes (and so FLOPs and memory) are the real
model's. The prompts are encoded with the tiny character tokenizer (`soar.tinymodel`, 106 ids),
so every id fed in is < 106 while the model samples from its whole vocabulary; the tokenizer
decodes the ids it does not know to nothing, which is harmless here (rewards are made up). A
random model with a large vocabulary almost never draws EOS (1 in ~50k-128k per token), so every
sample runs to max_new_tokens: the full-length cost the benchmarks want.

FLOPs (PaLM, Chowdhery et al. 2022, appendix B), per token of a sequence of length T:

    forward            2 N + 4 L d T
    forward + backward 6 N + 12 L d T

N = matmul weights: every layer's attention and MLP projections plus the LM head (vocab x d,
counted once whether tied or not); the input embedding is a lookup and costs no FLOPs, and norms
are ignored. L = layers, d = heads x head_dim (= hidden here). 4 L d T counts QK^T and AV over the
whole T x T square, as the SDPA kernel computes it under a padding mask (no causal saving). A
decoded token attends to its context c = prompt + tokens so far: 2 N + 4 L d c.
"""

from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM


@dataclass(frozen=True)
class Shape:
    """The dimensions of a Llama; `build` makes a random model of them."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def layer_matmul_params(self) -> int:
        """q and o: hidden x (heads x head_dim); k and v: hidden x (kv_heads x head_dim); MLP:
        gate, up and down, hidden x intermediate each."""
        q_o = 2 * self.hidden * self.heads * self.head_dim
        k_v = 2 * self.hidden * self.kv_heads * self.head_dim
        return q_o + k_v + 3 * self.hidden * self.intermediate

    def params(self) -> int:
        """Every weight, as `model.num_parameters()` counts them (tied embeddings once)."""
        norms = self.layers * 2 * self.hidden + self.hidden
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * self.layer_matmul_params() + norms + embeddings

    def matmul_params(self) -> int:
        """N of the FLOPs formulas: the layers' projections plus the LM head."""
        return self.layers * self.layer_matmul_params() + self.vocab * self.hidden

    def forward_flops(self, context: float) -> float:
        """FLOPs of one token's forward pass attending to `context` positions: 2N + 4 L d c."""
        return 2 * self.matmul_params() + 4 * self.layers * self.heads * self.head_dim * context

    def train_flops(self, context: float) -> float:
        """FLOPs of one token's forward and backward pass: 6N + 12 L d T."""
        return 3 * self.forward_flops(context)

    def config(self) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=self.vocab,
            hidden_size=self.hidden,
            intermediate_size=self.intermediate,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads,
            max_position_embeddings=4096,
            tie_word_embeddings=self.tied,
            pad_token_id=0,
            bos_token_id=None,
            eos_token_id=1,  # the tiny tokenizer's EOS
        )

    def build(self, device: str, dtype: torch.dtype, seed: int = 0) -> LlamaForCausalLM:
        """A randomly initialised model, initialised on `device` directly (a 1B model's init on
        the CPU takes longer than its benchmark)."""
        torch.manual_seed(seed)
        with torch.device(device):
            model = LlamaForCausalLM(self.config())
        return model.to(dtype)


SHAPES = {
    # SmolLM2-135M: 30 layers, width 576, 9 heads of 64 (3 KV heads), MLP 1536, vocab 49152.
    "135m": Shape("135m", 576, 1536, 30, 9, 3, 49152),
    # Llama-3.2-1B: 16 layers, width 2048, 32 heads of 64 (8 KV heads), MLP 8192, vocab 128256.
    "1b": Shape("1b", 2048, 8192, 16, 32, 8, 128256),
    # Llama-3.2-3B, the paper's model: 28 layers, width 3072, 24 heads of 128 (8 KV heads),
    # MLP 8192, vocab 128256. The projection's target; trains only on a GPU with > 80 GB.
    "3b": Shape("3b", 3072, 8192, 28, 24, 8, 128256),
    # CPU smoke test: 2 layers, width 64; vocab 256 > the tokenizer's 106 ids, as above.
    "tiny": Shape("tiny", 64, 128, 2, 4, 2, 256),
}


def describe(shape: Shape) -> str:
    """One line: parameters, N, and the FLOPs per token of a 1,024-token sequence."""
    return (
        f"{shape.name}: {shape.params():,} parameters, N = {shape.matmul_params():,} matmul "
        f"weights; at T = 1024: {shape.forward_flops(1024) / 1e9:.3g} GFLOP/token forward, "
        f"{shape.train_flops(1024) / 1e9:.3g} forward+backward"
    )


if __name__ == "__main__":
    for s in SHAPES.values():
        print(describe(s))
