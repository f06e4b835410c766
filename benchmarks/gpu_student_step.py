"""GPU check and throughput of the student inner loop and the teacher step on CUDA.

A randomly initialised model with SmolLM2-135M's shape (30 layers, width 576; the tiny character
tokenizer, so no hub download) in bfloat16: sampling runs to max_new_tokens, which measures
full-length throughput. Also checks that the sampler's log-probs equal the training forward's.

    python benchmarks/gpu_student_step.py [--questions 8] [--group 32] [--max-new-tokens 256]
"""

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from soar.arith import ARITH
from soar.rloo import completion_logprobs
from soar.sampler import TransformersSampler
from soar.student import train_rloo
from soar.teacher import make_optimizer, teacher_step
from soar.tinymodel import build_tokenizer


def smollm2_shaped(vocab: int, dtype: torch.dtype) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).to("cuda", dtype)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--questions", type=int, default=8)
    p.add_argument("--group", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    print(torch.cuda.get_device_name(), "torch", torch.__version__)

    model = smollm2_shaped(len(tokenizer), torch.float32)
    sampler = TransformersSampler(model, tokenizer, batch_size=64)
    samples = sampler.generate(["User: 12+34 Assistant:"], n=4, max_new_tokens=32, seed=1)[0]
    prompt = tokenizer("User: 12+34 Assistant:", add_special_tokens=False)["input_ids"]
    logprobs, mask = completion_logprobs(
        model, [prompt] * 4, [s.token_ids for s in samples], tokenizer.pad_token_id
    )
    sampled = torch.tensor([s.logprobs for s in samples], device="cuda")
    gap = ((logprobs - sampled).abs() * mask).max().item()
    print(f"float32: sampler vs training log-prob max gap {gap:.2e}")

    model = smollm2_shaped(len(tokenizer), torch.bfloat16)
    questions = [{"question": f"{i}+{i}", "answer": str(2 * i)} for i in range(64)]
    tokens = args.questions * args.group * args.max_new_tokens
    started = time.perf_counter()
    stats = train_rloo(
        model,
        tokenizer,
        questions,
        domain=ARITH,
        reward_fn=lambda completions, refs: [float(len(c) % 7) for c in completions],
        steps=args.steps,
        batch_questions=args.questions,
        group_size=args.group,
        max_new_tokens=args.max_new_tokens,
        temperature=1.0,
        lr=1e-5,
        kl_coef=0.001,
        seed=0,
    )
    torch.cuda.synchronize()
    per_step = [s["seconds"] for s in stats[1:]] or [stats[0]["seconds"]]
    print(
        f"student RLOO: {args.questions}x{args.group} rollouts x {args.max_new_tokens} tokens, "
        f"{sum(per_step) / len(per_step):.2f} s/step after the first "
        f"({tokens / (sum(per_step) / len(per_step)):.0f} generated+trained tokens/s), "
        f"total {time.perf_counter() - started:.1f} s, "
        f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
    )

    ref = smollm2_shaped(len(tokenizer), torch.bfloat16)
    completions = [
        s.token_ids
        for s in sampler.generate(
            [prompt and ARITH.teacher_prompt], n=64, max_new_tokens=128, seed=2
        )[0]
    ]
    started = time.perf_counter()
    out = teacher_step(
        model,
        ref,
        tokenizer(ARITH.teacher_prompt, add_special_tokens=False)["input_ids"],
        completions,
        [0.1 * (i % 4 - 1.5) for i in range(64)],
        optimizer=make_optimizer(model, 1e-5),
        lr=1e-5,
        kl_coef=0.001,
        max_grad_norm=1.0,
        normalisation="token",
        pad_id=tokenizer.pad_token_id,
        temperature=1.0,
    )
    torch.cuda.synchronize()
    print(f"teacher step over 64 rollouts: {time.perf_counter() - started:.2f} s, {out}")


if __name__ == "__main__":
    main()
