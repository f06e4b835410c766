"""Is the builtin tiny model a testbed where SOAR's effect can appear? Measures it, as numbers.

The domain (soar.arith): the tiny model adds sums column by column but hardly knows the column
facts of one rare digit. Hard problems are 4-digit sums full of it (fail@k); short sums that
hold it once are stepping stones; the teacher writes one- and two-digit sums, some of them
stepping stones.

    .venv/bin/python benchmarks/testbed.py [--repeats 3] [--inner-steps 15] [--lr 1e-4]
                                           [--dataset-size 32]
                                           [--long-steps 160] [--reward-questions 96] [--k 16]
                                           [--seeds 0 1 2] [--rare-rate 0.75]
                                           [--stones teacher|positional|scaled]
                                           [--stone-digits 2 3 4]

Prints, with the wall time of each part:
(a) the hard split: pool size, fail@k survivors; Hard-Only (fresh student, RLOO on hard train
    for --long-steps) greedy accuracy on hard test;
(b) one inner loop on stepping stones (teacher's answers as reference): the change of greedy
    accuracy on Q_R; curriculum (stepping stones for 64 steps, then hard train) on hard test;
(c) the base teacher: valid outputs, share that are stepping stones, accuracy of its answers,
    the base student's sampled success on its stepping stones;
(d) the student reward R = acc' - acc on Q_R over --repeats inner loops: mean and standard
    deviation for stepping-stone datasets, for easy datasets (the teacher's other problems) and
    for datasets as the teacher writes them (both kinds mixed, as a SOAR step sees them); the
    same for the share of answer digits right on Q_R, and how both follow the stones in each
    written dataset (correlation);
    and the cost of one RLOO step, one inner loop, one greedy grading of Q_R.
One torch thread: on a shared 2-core machine more threads only slow small matmuls down.
"""

import argparse
import copy
import itertools
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import get_cosine_schedule_with_warmup

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from soar.arith import (  # noqa: E402
    ARITH,
    HARD_RARE_RATE,
    build_arith_pool,
    carried_rare_columns,
    is_rare,
    make_problem,
    pair_of_kind,
    rare_columns,
)
from soar.grading import (  # noqa: E402
    answer_checker,
    greedy_correct,
    sampled_correct,
    shaped_rewards,
)
from soar.hardset import build_hard_set  # noqa: E402
from soar.models import load_model  # noqa: E402
from soar.prompts import last_boxed, parse_teacher_output  # noqa: E402
from soar.sampler import TransformersSampler  # noqa: E402
from soar.student import train_rloo  # noqa: E402

MAX_NEW_TOKENS = 64
CURRICULUM_STEPS = 64


def sampler(model, tokenizer) -> TransformersSampler:
    return TransformersSampler(model, tokenizer, batch_size=256)


def accuracy(model, tokenizer, questions: list[dict], check) -> float:
    correct = greedy_correct(
        sampler(model, tokenizer),
        questions,
        domain=ARITH,
        max_new_tokens=MAX_NEW_TOKENS,
        check=check,
    )
    return statistics.fmean(correct)


def digit_accuracy(model, tokenizer, questions: list[dict]) -> float:
    """Share of the reference's digits that the greedy answer has right, in place (aligned on
    the units): the progress on single column facts that whole-problem accuracy hides while a
    hard sum still has one wrong column."""
    groups = sampler(model, tokenizer).generate(
        [ARITH.student_prompt(q["question"], tokenizer) for q in questions],
        temperature=0.0,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    shares = []
    for group, question in zip(groups, questions, strict=True):
        answer, reference = (last_boxed(group[0].text) or "").strip(), question["answer"]
        right = sum(a == b for a, b in zip(reversed(answer), reversed(reference), strict=False))
        shares.append(right / len(reference))
    return statistics.fmean(shares)


def true_answer(question: str) -> str:
    """The right sum (the teacher's answers may be wrong)."""
    a, b = question.split("+")
    return str(int(a) + int(b))


def true_answer_or_none(question: str) -> str | None:
    """The right sum, or None when the question is not a sum of two whole numbers."""
    parts = question.split("+")
    return true_answer(question) if len(parts) == 2 and all(p.isdigit() for p in parts) else None


def rare_only_at(position: int):
    """A pair drawer (soar.arith) whose column `position` is rare and every other is not."""
    columns = itertools.count()

    def draw(rng: random.Random, leading: bool) -> tuple[int, int]:
        return pair_of_kind(rng, leading, next(columns) == position)

    return draw


def positional_stones(n: int, seed: int, digits: tuple[int, ...] = (2, 3, 4)) -> list[dict]:
    """Stepping stones with right answers as a teacher could at best write them: sums of
    `digits` digits (in turn) with one rare column at a random position (no carry into it). The
    rare facts there sit where the hard problems hold them, not only in the first column as in
    a one-digit sum."""
    rng = random.Random(seed)
    stones: list[dict] = []
    seen: set[str] = set()
    while len(stones) < n:
        size = digits[len(stones) % len(digits)]
        problem = make_problem(rng, size, rare_only_at(rng.randrange(size)))
        question = problem["question"]
        if question not in seen and not carried_rare_columns(question):
            seen.add(question)
            stones.append({"question": question, "answer": problem["answer"]})
    return stones


def scaled_stones(n: int, seed: int) -> list[dict]:
    """Stepping stones a teacher could recall whole: a one-digit sum holding the rare digit, both
    numbers times 10^j (`7000+5000`, answer 12000). The student's column work meets the rare
    fact at column j+1 after j columns of 0+0. The 70 distinct ones, shuffled and repeated to n."""
    distinct = [
        (x * 10**j, y * 10**j)
        for j in range(4)
        for x in range(1 if j else 0, 10)
        for y in range(1 if j else 0, 10)
        if is_rare(x, y)
    ]
    random.Random(seed).shuffle(distinct)
    return [
        {"question": f"{a}+{b}", "answer": str(a + b)}
        for a, b in (distinct[i % len(distinct)] for i in range(n))
    ]


def teacher_problems(model, tokenizer, n: int, seed: int) -> list[dict]:
    """The base teacher's valid outputs (tags, a box, a sum) as {"question", "answer"}."""
    outputs = sampler(model, tokenizer).generate(
        [ARITH.teacher_input(tokenizer)], n=n, temperature=1.0, max_new_tokens=48, seed=seed
    )[0]
    pairs = [parse_teacher_output(o.text) for o in outputs]
    valid = [p for p in pairs if p is not None and true_answer_or_none(p.question)]
    return [{"question": p.question, "answer": p.answer} for p in valid]


def train(model, tokenizer, questions, check, *, steps, lr, seed, start_step=0, **carry):
    return train_rloo(
        model,
        tokenizer,
        questions,
        domain=ARITH,
        reward_fn=lambda completions, refs: shaped_rewards(check, completions, refs),
        steps=steps,
        batch_questions=8,
        group_size=8,
        max_new_tokens=MAX_NEW_TOKENS,
        temperature=1.0,
        lr=lr,
        kl_coef=0.001,
        seed=seed,
        start_step=start_step,
        **carry,
    )


def inner_loop_rewards(
    base, tokenizer, datasets, reward_q, check, args
) -> tuple[list, list, float]:
    """R = acc' - acc on Q_R for one inner loop per dataset; the change of digit accuracy on
    Q_R; and the mean loop's seconds."""
    acc = accuracy(base, tokenizer, reward_q, check)
    digits = digit_accuracy(base, tokenizer, reward_q)
    rewards, digit_gains, seconds = [], [], []
    for i, dataset in enumerate(datasets):
        student = copy.deepcopy(base)
        start = time.perf_counter()
        train(student, tokenizer, dataset, check, steps=args.inner_steps, lr=args.lr, seed=i)
        seconds.append(time.perf_counter() - start)
        rewards.append(accuracy(student, tokenizer, reward_q, check) - acc)
        digit_gains.append(digit_accuracy(student, tokenizer, reward_q) - digits)
    return rewards, digit_gains, statistics.fmean(seconds)


def long_run(base, tokenizer, phases, test, check, lr: float, seed: int = 0) -> float:
    """A fresh student trained through phases [(questions, steps)] with one optimizer and one
    cosine schedule (as soar's fresh-student runs), sampling with `seed`; its greedy accuracy
    on hard test."""
    student = copy.deepcopy(base)
    total = sum(steps for _, steps in phases)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, 0, total)
    step = 0
    for questions, steps in phases:
        train(
            student,
            tokenizer,
            questions,
            check,
            steps=steps,
            lr=lr,
            seed=seed,
            start_step=step,
            optimizer=optimizer,
            schedule=schedule,
        )
        step += steps
    return accuracy(student, tokenizer, test, check)


def describe(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    each = ", ".join(f"{v:+.3f}" for v in values)
    return f"mean {statistics.fmean(values):+.3f} sd {spread:.3f} ({each})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-arith")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inner-steps", type=int, default=15)
    parser.add_argument("--dataset-size", type=int, default=32, help="questions in a dataset")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--long-steps", type=int, default=160)
    parser.add_argument("--reward-questions", type=int, default=96)
    parser.add_argument("--pool", type=int, default=320)
    parser.add_argument("--k", type=int, default=16, help="samples of the fail@k filter")
    parser.add_argument(
        "--rare-rate", type=float, default=HARD_RARE_RATE, help="share of rare hard columns"
    )
    parser.add_argument(
        "--stones",
        choices=["teacher", "positional", "scaled"],
        default="teacher",
        help="stepping stones of (b), (d) and the curriculum: the base teacher's sums that "
        "hold the rare digit, 2-4 digit sums with one rare column anywhere "
        "(positional_stones), or one-digit sums times 10^j (scaled_stones)",
    )
    parser.add_argument(
        "--stone-digits", type=int, nargs="+", default=[2, 3, 4], help="of positional stones"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="*",
        default=[0],
        help="sampling seeds of the long runs; none skips them",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    base, tokenizer = load_model(args.model, device="cpu")

    with answer_checker() as check:
        start = time.perf_counter()
        pool = build_arith_pool(args.pool, seed=0, rare_rate=args.rare_rate)
        train_q, test_q = build_hard_set(
            sampler(base, tokenizer),
            ARITH,
            pool,
            k=args.k,
            max_new_tokens=MAX_NEW_TOKENS,
            temperature=1.0,
            seed=1,
            checker=check,
        )
        print(
            f"(a) hard split: {len(train_q) + len(test_q)}/{len(pool)} pool problems fail@{args.k}"
            f" (train {len(train_q)}, test {len(test_q)}) [{time.perf_counter() - start:.0f} s]"
        )
        reward_q = train_q[: args.reward_questions]
        start = time.perf_counter()
        base_test = accuracy(base, tokenizer, test_q, check)
        grading = time.perf_counter() - start
        start = time.perf_counter()
        base_qr = accuracy(base, tokenizer, reward_q, check)
        print(
            f"    base greedy: hard test {base_test:.3f}, Q_R ({len(reward_q)}) {base_qr:.3f}"
            f" [grading Q_R: {time.perf_counter() - start:.2f} s]; digit accuracy on Q_R "
            f"{digit_accuracy(base, tokenizer, reward_q):.3f}"
        )

        start = time.perf_counter()
        problems = teacher_problems(base, tokenizer, 1024, seed=2)
        stones = [p for p in problems if rare_columns(p["question"])]
        easy = [p for p in problems if not rare_columns(p["question"])]
        right = statistics.fmean(true_answer(p["question"]) == p["answer"] for p in stones)
        rows = sampled_correct(
            sampler(base, tokenizer),
            stones,
            domain=ARITH,
            n=16,
            temperature=1.0,
            max_new_tokens=MAX_NEW_TOKENS,
            check=check,
        )
        rates = [statistics.fmean(row) for row in rows]
        print(
            f"(c) teacher: {len(problems)}/1024 valid, {len(stones) / len(problems):.3f} stepping "
            f"stones (its answers right {right:.3f}); base student's sampled success on them "
            f"{statistics.fmean(rates):.3f}, strictly between 0 and 1 on "
            f"{statistics.fmean(0 < r < 1 for r in rates):.2f} of them "
            f"[{time.perf_counter() - start:.0f} s]"
        )

        if args.stones == "positional":
            stones = positional_stones(len(stones), seed=5, digits=tuple(args.stone_digits))
        elif args.stones == "scaled":
            stones = scaled_stones(len(stones), seed=5)
        if args.stones != "teacher":
            print(f"    (b), (d) and the curriculum use {len(stones)} {args.stones} stones instead")

        def datasets(pool_: list[dict]) -> list[list[dict]]:
            size = args.dataset_size
            return [pool_[i * size : (i + 1) * size] for i in range(args.repeats)]

        stone_r, stone_d, loop_s = inner_loop_rewards(
            base, tokenizer, datasets(stones), reward_q, check, args
        )
        easy_r, easy_d, _ = inner_loop_rewards(
            base, tokenizer, datasets(easy), reward_q, check, args
        )
        written_r, written_d, _ = inner_loop_rewards(
            base, tokenizer, datasets(problems), reward_q, check, args
        )
        print(f"(b,d) R on Q_R after {args.inner_steps} steps, lr {args.lr}:")
        print(f"    stepping-stone datasets: {describe(stone_r)}")
        print(f"    easy datasets:           {describe(easy_r)}")
        counts = [sum(bool(rare_columns(p["question"])) for p in d) for d in datasets(problems)]
        print(f"    datasets as written:     {describe(written_r)}; stones in each {counts}")
        print("    change of digit accuracy on Q_R:")
        print(f"    stepping-stone datasets: {describe(stone_d)}")
        print(f"    easy datasets:           {describe(easy_d)}")
        print(f"    datasets as written:     {describe(written_d)}")
        if args.repeats > 2:
            print(
                "    correlation with the stones in each written dataset: R "
                f"{statistics.correlation(counts, written_r):+.2f}, digit accuracy "
                f"{statistics.correlation(counts, written_d):+.2f}"
            )
        print(
            f"    one inner loop {loop_s:.1f} s; one RLOO step {loop_s / args.inner_steps:.2f} s"
            f"; greedy grading of hard test ({len(test_q)}) {grading:.2f} s"
        )

        rest = args.long_steps - CURRICULUM_STEPS
        for seed in args.seeds:
            start = time.perf_counter()
            phases = [(train_q, args.long_steps)]
            hard_only = long_run(base, tokenizer, phases, test_q, check, args.lr, seed)
            phases = [(stones, CURRICULUM_STEPS), (train_q, rest)]
            curriculum = long_run(base, tokenizer, phases, test_q, check, args.lr, seed)
            print(
                f"(a,b) seed {seed}: hard test greedy after {args.long_steps} steps: Hard-Only "
                f"{hard_only:.3f}, curriculum ({CURRICULUM_STEPS} stepping stones + {rest} hard) "
                f"{curriculum:.3f} (base {base_test:.3f}) [{time.perf_counter() - start:.0f} s]"
            )


if __name__ == "__main__":
    main()
