"""Student RLOO step, ours (soar.student.train_rloo) against TRL's RLOOTrainer.train().

Both sides get the same model, questions, batch (questions x group), max new tokens, learning rate,
KL coefficient and shaped reward (soar.verify with math-verify workers), on CPU in float32 (TRL's
default would autocast to bfloat16). A step is generation + reward + loss + backward + optimizer.
Each run is its own subprocess, so the peak RSS printed is its own; the sides alternate, and a
side's seconds per step is its best run's median over the steps after the first (which pays
one-off warm-up costs). One torch thread by default: at this size, two threads on a busy 2-core
machine make small matmuls 10-50x slower.

    python benchmarks/student_step.py [--steps 6] [--questions 8] [--group 8] [--max-new-tokens 48]
"""

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from soar.arith import ARITH, make_problem  # noqa: E402
from soar.grading import shaped_rewards  # noqa: E402
from soar.models import load_model  # noqa: E402
from soar.verify import AnswerChecker  # noqa: E402

LR = 1e-5
KL_COEF = 0.001
TEMPERATURE = 1.0
DIFFICULTY = 2


def tiny_model_and_questions(n: int):
    """The tiny arithmetic Llama (soar.models) and n two-digit sums, the same on both sides."""
    model, tokenizer = load_model("tiny-arith")
    rng = random.Random(0)
    return model, tokenizer, [make_problem(rng, DIFFICULTY) for _ in range(n)]


def run_ours(args) -> list[float]:
    from soar.student import train_rloo

    model, tokenizer, questions = tiny_model_and_questions(args.questions * args.steps)
    with AnswerChecker() as checker:
        stats = train_rloo(
            model,
            tokenizer,
            questions,
            domain=ARITH,
            reward_fn=lambda completions, refs: shaped_rewards(checker, completions, refs),
            steps=args.steps,
            batch_questions=args.questions,
            group_size=args.group,
            max_new_tokens=args.max_new_tokens,
            temperature=TEMPERATURE,
            lr=LR,
            kl_coef=KL_COEF,
            seed=0,
        )
    return [s["seconds"] for s in stats]


def run_trl(args) -> list[float]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds: list[float] = []

        def on_train_begin(self, *_, **__):
            self.last = time.perf_counter()

        def on_step_end(self, *_, **__):
            now = time.perf_counter()
            self.seconds.append(now - self.last)
            self.last = now

    model, tokenizer, questions = tiny_model_and_questions(args.questions * args.steps)
    rows = [
        {"prompt": ARITH.student_prompt(q["question"]), "answer": q["answer"]} for q in questions
    ]
    timer = StepTimer()
    # TRL loads its reference model from the policy's path: the cached checkpoint.
    with tempfile.TemporaryDirectory() as tmp, AnswerChecker() as checker:

        def reward(prompts, completions, answer, **_):
            return shaped_rewards(checker, completions, answer)

        config = RLOOConfig(
            output_dir=tmp,
            per_device_train_batch_size=args.questions * args.group,
            num_generations=args.group,
            max_completion_length=args.max_new_tokens,
            temperature=TEMPERATURE,
            learning_rate=LR,
            lr_scheduler_type="cosine",
            beta=KL_COEF,
            max_steps=args.steps,
            gradient_checkpointing=False,
            bf16=False,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            seed=0,
        )
        trainer = RLOOTrainer(
            model,
            reward,
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[timer],
        )
        trainer.train()
    return timer.seconds


def measure(impl: str, args) -> None:
    torch.set_num_threads(args.threads)
    seconds = run_ours(args) if impl == "ours" else run_trl(args)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_mib}))


def run_side(impl: str, args) -> dict:
    command = [sys.executable, __file__, "--impl", impl]
    for name in ("steps", "questions", "group", "max_new_tokens", "threads"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["per_step"] = statistics.median(result["seconds"][1:])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on each side")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side, interleaved")
    parser.add_argument("--impl", choices=["ours", "trl"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.impl:
        measure(args.impl, args)
        return
    print(
        f"student RLOO step: {args.questions} questions x {args.group} completions, "
        f"{args.max_new_tokens} new tokens, {args.steps} steps, {args.threads} torch threads, "
        f"best of {args.repeats} interleaved runs"
    )
    runs = {"ours": [], "trl": []}
    for _ in range(args.repeats):
        for impl, results in runs.items():
            results.append(run_side(impl, args))
    best = {}
    for impl, results in runs.items():
        best[impl] = min(r["per_step"] for r in results)
        per_run = " ".join(f"{r['per_step']:.3f}" for r in results)
        peak = max(r["peak_rss_mib"] for r in results)
        print(f"{impl:>4}: {best[impl]:.3f} s/step (runs: {per_run}), peak RSS {peak:.0f} MiB")
    print(f"ratio TRL / ours: {best['trl'] / best['ours']:.2f}x")


if __name__ == "__main__":
    main()
