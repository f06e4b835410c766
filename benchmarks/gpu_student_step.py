"""GPU check and throughput of the student inner loop and the teacher step on CUDA.

A randomly initialised model with SmolLM2-135M's shape (30 layers, width 576; the tiny character
tokenizer, so no hub download), trained as the stages train it: float32 master weights, forward
passes under bfloat16 autocast, losses micro-batched. Sampling runs to max_new_tokens, which
measures full-length throughput and peak memory (before micro-batching: 105 GiB at 512 tokens).
Also checks that the sampler's log-probs equal the training forward's, and that one bf16-autocast
AdamW step at lr 1e-5 changes the weights as a float32 step does (pure bf16 weights do not).

    python benchmarks/gpu_student_step.py [--questions 8] [--group 32] [--max-new-tokens 512]
"""

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from soar.arith import ARITH
from soar.rloo import accumulate_gradients, completion_logprobs
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
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--micro-batch", type=int, default=16)
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

    update_match(tokenizer, prompt, [s.token_ids for s in samples])

    model = smollm2_shaped(len(tokenizer), torch.float32)  # master weights, bf16 compute
    torch.cuda.reset_peak_memory_stats()
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
        micro_batch=args.micro_batch,
        compute_dtype=torch.bfloat16,
    )
    torch.cuda.synchronize()
    per_step = [s["seconds"] for s in stats[1:]] or [stats[0]["seconds"]]
    print(
        f"student RLOO: {args.questions}x{args.group} rollouts x {args.max_new_tokens} tokens, "
        f"micro-batch {args.micro_batch}: "
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
        compute_dtype=torch.bfloat16,
    )
    torch.cuda.synchronize()
    print(f"teacher step over 64 rollouts: {time.perf_counter() - started:.2f} s, {out}")


def update_match(tokenizer, prompt: list[int], completions: list[list[int]]) -> None:
    """One AdamW step at lr 1e-5 three ways: float32, bf16 autocast over float32 master weights
    (what the stages do), and pure bf16 weights (what they did before)."""
    torch.manual_seed(1)
    start = smollm2_shaped(len(tokenizer), torch.float32).state_dict()
    results = {}
    for name, dtype, weights in [
        ("float32", None, torch.float32),
        ("bf16 autocast, fp32 master", torch.bfloat16, torch.float32),
        ("pure bf16", None, torch.bfloat16),
    ]:
        model = smollm2_shaped(len(tokenizer), torch.float32)
        model.load_state_dict(start)
        model.to(weights)
        before = {k: v.detach().float().clone() for k, v in model.named_parameters()}
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
        advantages = torch.linspace(-1, 1, len(completions))
        accumulate_gradients(
            model, None, [prompt] * len(completions), completions, advantages,
            pad_id=tokenizer.pad_token_id, temperature=1.0, kl_coef=0.0,
            normalisation="token", micro_batch=16, compute_dtype=dtype,
        )  # fmt: skip
        optimizer.step()
        deltas = torch.cat(
            [(p.detach().float() - before[k]).flatten() for k, p in model.named_parameters()]
        )
        results[name] = ((deltas != 0).float().mean().item(), deltas.abs().mean().item())
    reference = results["float32"][1]
    for name, (changed, mean) in results.items():
        print(
            f"one AdamW step at lr 1e-5, {name}: {changed:.1%} of weights changed, "
            f"mean |dw| {mean:.2e} ({mean / reference:.2f}x float32's)"
        )


if __name__ == "__main__":
    main()
