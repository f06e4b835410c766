"""Decode throughput on CPU: TransformersSampler against DeviceSampler (soar.decode), one process.

Two models: the builtin tiny-arith Llama, and a randomly initialised Llama with SmolLM2-135M's
shape (30 layers, width 576, 9 heads, 3 KV heads; soar.tinymodel's character tokenizer, so no
hub download). Each batch of prompts is sampled greedily and at temperature 1.0. tokens/s counts
batch x the longest sample: the positions a loop must decode until every row is done, the same
for both samplers when their samples are (greedy), and not favouring the one whose random stream
happens to end rows sooner (sampled). DeviceSampler's up to soar.decode.CHECK_EVERY - 1 further
steps count against it. The two samplers alternate, each a side's best of `--repeats` runs after
one warm-up call. On CPU there is no host sync to save, so this measures
the cost of the static cache and the device-side loop, not the GPU gain. One torch thread by
default (see benchmarks/student_step.py).

    python benchmarks/decode.py [--batch 32] [--max-new-tokens 64] [--repeats 3] [--threads 1]
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from soar.arith import ARITH  # noqa: E402
from soar.decode import DeviceSampler  # noqa: E402
from soar.models import load_model  # noqa: E402
from soar.sampler import Sampler, TransformersSampler  # noqa: E402
from soar.tinymodel import build_tokenizer  # noqa: E402


def smollm2_shaped():
    """A random float32 Llama with SmolLM2-135M's shape, and the character tokenizer."""
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tokenizer


def timed(sampler: Sampler, prompts: list[str], temperature: float, max_new_tokens: int):
    """(seconds, batch x longest sample) of one generate call."""
    started = time.perf_counter()
    groups = sampler.generate(
        prompts, n=1, temperature=temperature, max_new_tokens=max_new_tokens, seed=0
    )
    seconds = time.perf_counter() - started
    return seconds, len(groups) * max(len(s.token_ids) for group in groups for s in group)


def compare(name: str, model, tokenizer, args) -> None:
    questions = [f"{i}+{(37 * i) % 1000}" for i in range(args.batch)]
    prompts = [ARITH.student_prompt(q, tokenizer) for q in questions]
    samplers = {
        "transformers": TransformersSampler(model, tokenizer, batch_size=args.batch),
        "device": DeviceSampler(model, tokenizer, batch_size=args.batch),
    }
    for temperature in (0.0, 1.0):
        for sampler in samplers.values():
            timed(sampler, prompts, temperature, 2)  # warm-up
        best = {kind: 0.0 for kind in samplers}
        for _ in range(args.repeats):
            for kind, sampler in samplers.items():
                seconds, tokens = timed(sampler, prompts, temperature, args.max_new_tokens)
                best[kind] = max(best[kind], tokens / seconds)
        print(
            f"{name}, temperature {temperature}: transformers {best['transformers']:.0f} "
            f"tokens/s, device {best['device']:.0f} tokens/s, "
            f"device / transformers {best['device'] / best['transformers']:.2f}x",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"decode on CPU: batch {args.batch}, {args.max_new_tokens} new tokens, "
        f"{args.threads} torch threads, best of {args.repeats}; torch {torch.__version__}"
    )
    with torch.no_grad():
        compare("tiny-arith", *load_model("tiny-arith"), args)
        compare("SmolLM2-135M-shaped (random)", *smollm2_shaped(), args)


if __name__ == "__main__":
    main()
