"""Can the tiny teacher learn to write stepping stones in as many steps as a SOAR run takes, if
its reward follows the stones the way the students' reward was measured to? The teacher's RLOO
step (soar.teacher) with a model reward in place of the students': R_k = slope * (share of
stones in dataset k) + Gaussian noise of sd `--noise`. Fitted to benchmarks/testbed.py's
datasets as written (docs/design.md, "Measured in session 11"): with 8 questions a dataset,
slope 0.036 and noise 0.005 (0.0097 for one inner loop, over r = 4 repeats); with 32, slope
0.014 and noise 0.0036. Noise 0 shows what a clean reward would do.

    .venv/bin/python benchmarks/soar_effect/teacher_oracle.py [--steps 24] [--datasets 4]
        [--size 8] [--lr 1e-4] [--slope 0.036] [--noise 0.0] [--every 8] [--count 512] [--seed 0]

Prints, every --every steps, the share of valid outputs in --count samples of the teacher and
the share of stones among them (the same sampling seed each time).
"""

import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from soar.arith import ARITH, rare_columns  # noqa: E402
from soar.models import load_model  # noqa: E402
from soar.prompts import encode_prompts, parse_teacher_output  # noqa: E402
from soar.runstate import derive_seed  # noqa: E402
from soar.sampler import TransformersSampler  # noqa: E402
from soar.teacher import cosine_lr, dataset_advantages, make_optimizer, teacher_step  # noqa: E402

MAX_NEW_TOKENS = 48


def sample_questions(sampler: TransformersSampler, prompt: str, n: int, seed: int) -> list:
    """n valid teacher outputs as (sample, question); invalid ones are dropped, as soar's
    rejection sampling does."""
    samples = sampler.generate(
        [prompt], n=n, temperature=1.0, max_new_tokens=MAX_NEW_TOKENS, seed=seed
    )
    pairs = [(s, parse_teacher_output(s.text)) for s in samples[0]]
    return [(s, p.question) for s, p in pairs if p is not None]


def describe(sampler: TransformersSampler, prompt: str, count: int, seed: int) -> str:
    """The share of valid outputs among `count` samples, and of stones among the valid ones."""
    questions = [q for _, q in sample_questions(sampler, prompt, count, seed)]
    stones = sum(bool(rare_columns(q)) for q in questions)
    return f"valid {len(questions) / count:.3f}, stones {stones / max(1, len(questions)):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-arith")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--datasets", type=int, default=4)
    parser.add_argument("--size", type=int, default=8, help="questions in a dataset")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--slope", type=float, default=0.036)
    parser.add_argument("--noise", type=float, default=0.0, help="sd of the reward's noise")
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--count", type=int, default=512)
    parser.add_argument(
        "--seed", type=int, default=0, help="of the teacher's rollouts and the noise"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy, tokenizer = load_model(args.model, device="cpu")
    ref, _ = load_model(args.model, device="cpu")
    sampler = TransformersSampler(policy, tokenizer, batch_size=256)
    prompt = ARITH.teacher_input(tokenizer)
    prompt_ids = encode_prompts(tokenizer, [prompt])[0]
    optimizer = make_optimizer(policy, args.lr)
    noise = random.Random(args.seed)
    start = time.perf_counter()
    print(f"step 0: {describe(sampler, prompt, args.count, seed=10**6)}")
    for t in range(1, args.steps + 1):
        # 1) the teacher writes g datasets of n; 2) the oracle's reward per dataset
        rollouts = sample_questions(
            sampler, prompt, args.datasets * args.size, seed=derive_seed(args.seed, "rollouts", t)
        )
        if len(rollouts) < args.datasets:
            print(f"step {t}: only {len(rollouts)} valid outputs, fewer than the datasets; stop")
            return
        datasets = [rollouts[k :: args.datasets] for k in range(args.datasets)]
        shares = [sum(bool(rare_columns(q)) for _, q in d) / len(d) for d in datasets]
        rewards = [args.slope * s + noise.gauss(0.0, args.noise) for s in shares]  # [g]
        # 3) one RLOO step of the teacher, every rollout of dataset k carrying A_k
        advantages = dataset_advantages(rewards)
        teacher_step(
            policy,
            ref,
            prompt_ids,
            [s.token_ids for d in datasets for s, _ in d],
            [a for d, a in zip(datasets, advantages, strict=True) for _ in d],
            optimizer=optimizer,
            lr=cosine_lr(t, 0, args.steps, args.lr),
            kl_coef=0.001,
            max_grad_norm=1.0,
            normalisation="token",
            pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            temperature=1.0,
        )
        policy.eval()
        if t % args.every == 0:
            state = describe(sampler, prompt, args.count, seed=10**6)
            print(f"step {t}: {state} [{time.perf_counter() - start:.0f} s]")


if __name__ == "__main__":
    main()
