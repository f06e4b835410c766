"""The builtin tiny model is a testbed where SOAR's effect can appear (benchmarks/testbed.py
measures the effect itself): a genuine hard split, a teacher prompt that names none of it, and
stepping stones the base teacher writes and the base student solves only sometimes.

The bounds are the measured numbers (in comments) with room for sampling noise; every sample is
seeded, so a failure means the model or the domain changed."""

import statistics

import pytest

from soar.arith import (
    ARITH,
    RARE_DIGIT,
    build_arith_pool,
    is_rare,
    operand_columns,
    rare_columns,
)
from soar.grading import answer_checker, sampled_correct
from soar.hardset import build_hard_set
from soar.prompts import parse_teacher_output

K = 16
MAX_NEW_TOKENS = 64


@pytest.fixture(scope="module")
def check():
    with answer_checker() as checker:
        yield checker


@pytest.fixture(scope="module")
def hard_split(tiny_sampler, check) -> list[dict]:
    pool = build_arith_pool(64, seed=0)
    train, test = build_hard_set(
        tiny_sampler,
        ARITH,
        pool,
        k=K,
        max_new_tokens=MAX_NEW_TOKENS,
        temperature=1.0,
        seed=1,
        checker=check,
    )
    return train + test


def one_digit_stepping_stones() -> list[dict]:
    """Every one-digit sum that holds the rare digit: all 19 of them, by brute force."""
    return [
        {"question": f"{a}+{b}", "answer": str(a + b)}
        for a in range(10)
        for b in range(10)
        if RARE_DIGIT in (a, b)
    ]


def true_sum(question: str) -> str:
    return str(sum(map(int, question.split("+"))))


def rare_tens(question: str) -> bool:
    """A two-digit sum whose tens column holds the rare digit."""
    columns = operand_columns(question)
    return len(columns) == 2 and is_rare(*columns[1])


def test_most_of_the_pool_is_fail_at_k_and_stays_so_with_fresh_samples(
    hard_split, tiny_sampler, check
):
    assert len(hard_split) >= 45  # measured: 58 of 64 (60, 61 for pool seeds 1, 2)
    again = sampled_correct(
        tiny_sampler,
        hard_split,
        domain=ARITH,
        n=K,
        temperature=1.0,
        max_new_tokens=MAX_NEW_TOKENS,
        check=check,
        seed=99,
    )
    solved = statistics.fmean(any(row) for row in again)
    assert solved <= 0.1  # measured: 2 of 58 (2 of 60, 0 of 61 for pool seeds 1, 2)


def test_the_teacher_prompt_holds_no_hard_problem(hard_split, tiny):
    _, tokenizer = tiny
    prompt = ARITH.teacher_input(tokenizer)
    assert not [p for p in hard_split if p["question"] in prompt]
    assert "+" not in prompt  # not even a sum of another length


def test_the_base_teacher_writes_stepping_stones_with_right_answers(tiny_sampler):
    outputs = tiny_sampler.generate(
        [ARITH.teacher_input(tiny_sampler.tokenizer)],
        n=512,
        temperature=1.0,
        max_new_tokens=48,
        seed=2,
    )[0]
    pairs = [parse_teacher_output(o.text) for o in outputs]
    valid = [p for p in pairs if p is not None and "+" in p.question]
    stones = [p for p in valid if rare_columns(p.question)]
    assert len(valid) >= 500  # measured: 510
    # uniform digits, half one-digit and half two-digit sums: (0.19 + 0.36) / 2 = 0.275
    assert 0.2 <= len(stones) / len(valid) <= 0.5  # measured: 0.357
    right = [true_sum(p.question) == p.answer for p in stones]
    assert statistics.fmean(right) >= 0.75  # measured: 0.874
    # the rare fact in the tens column, where a one-digit sum cannot put it
    tens = [p for p in stones if rare_tens(p.question)]
    assert len(tens) >= 30  # measured: 74
    assert statistics.fmean(true_sum(p.question) == p.answer for p in tens) >= 0.75  # 0.919


def test_the_base_student_solves_stepping_stones_only_sometimes(tiny_sampler, check):
    stones = one_digit_stepping_stones()
    rows = sampled_correct(
        tiny_sampler,
        stones,
        domain=ARITH,
        n=64,
        temperature=1.0,
        max_new_tokens=MAX_NEW_TOKENS,
        check=check,
        seed=3,
    )
    rate = statistics.fmean(c for row in rows for c in row)
    assert 0.02 <= rate <= 0.5  # measured: 0.116 over 19 x 64 samples
    assert sum(0 < statistics.fmean(row) < 1 for row in rows) >= 3  # measured: 15 of 19
