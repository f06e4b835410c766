import random

import pytest

from soar.arith import (
    ARITH,
    HARD_DIFFICULTIES,
    HARD_RARE_RATE,
    RARE_DIGIT,
    build_arith_pool,
    carried_rare_columns,
    column_steps,
    is_rare,
    make_problem,
    operand_columns,
    rare_columns,
    rare_rate_pair,
    solution_text,
    teacher_text,
)
from soar.prompts import last_boxed, parse_teacher_output


def test_problems_are_deterministic_for_a_seed():
    first = [make_problem(random.Random(3), d) for d in range(1, 6)]
    again = [make_problem(random.Random(3), d) for d in range(1, 6)]
    other = [make_problem(random.Random(4), d) for d in range(1, 6)]
    assert first == again
    assert first != other


@pytest.mark.parametrize("difficulty", [1, 2, 3, 5, 8])
def test_difficulty_is_the_number_of_digits_and_the_answer_is_the_sum(difficulty):
    rng = random.Random(difficulty)
    for _ in range(50):
        problem = make_problem(rng, difficulty)
        a, b = problem["question"].split("+")
        assert len(a) == len(b) == difficulty
        assert problem["answer"] == str(int(a) + int(b))
        assert problem["difficulty"] == difficulty


def test_worked_solution_adds_columns_least_significant_first():
    assert solution_text("47+85", "132") == " 7+5+0=12,4+8+1=13 \\boxed{132}"
    assert column_steps("999+1") == ["9+1+0=10", "9+0+1=10", "9+0+1=10"]


@pytest.mark.parametrize("difficulty", [1, 2, 4, 7])
def test_solution_steps_reach_the_boxed_answer(difficulty):
    rng = random.Random(difficulty)
    for _ in range(50):
        problem = make_problem(rng, difficulty)
        text = solution_text(problem["question"], problem["answer"])
        assert text.endswith(f"\\boxed{{{problem['answer']}}}")
        assert last_boxed(text) == problem["answer"]
        sums = [int(step.split("=")[1]) for step in column_steps(problem["question"])]
        digits = "".join(str(s % 10) for s in reversed(sums))
        assert int(str(sums[-1] // 10) + digits) == int(problem["answer"])


def test_solution_rejects_a_question_that_is_not_a_sum():
    with pytest.raises(ValueError, match="not a sum"):
        solution_text("7*8", "56")


def test_teacher_text_parses_back():
    rng = random.Random(0)
    for difficulty in (1, 3, 6):
        problem = make_problem(rng, difficulty)
        text = ARITH.teacher_prompt + teacher_text(problem["question"], problem["answer"])
        pair = parse_teacher_output(text)
        assert pair is not None
        assert (pair.question, pair.answer) == (problem["question"], problem["answer"])


def test_student_prompt_is_short():
    assert ARITH.student_prompt("47+85") == "User: 47+85 Assistant:"


def test_pool_is_distinct_deterministic_and_spread_over_difficulties():
    pool = build_arith_pool(40, seed=1, difficulties=(4, 5))
    assert pool == build_arith_pool(40, seed=1, difficulties=(4, 5))
    assert len({p["question"] for p in pool}) == 40
    assert sorted(p["difficulty"] for p in pool) == [4] * 20 + [5] * 20


def test_pool_larger_than_the_difficulty_allows_is_refused():
    with pytest.raises(ValueError, match="distinct"):
        build_arith_pool(101, seed=0, difficulties=(1,))


def test_rare_columns_counts_columns_that_hold_the_rare_digit():
    assert RARE_DIGIT == 7
    assert rare_columns("47+85") == 1
    assert rare_columns("77+70") == 2
    assert rare_columns("12+34") == 0
    assert rare_columns("7*8") == 0


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_rare_rate_pair_draws_only_the_kind_asked_for(rate):
    rng = random.Random(0)
    for _ in range(50):
        problem = make_problem(rng, 3, rare_rate_pair(rate))
        assert rare_columns(problem["question"]) == (3 if rate else 0)
        assert len(problem["question"].split("+")[0]) == 3  # no leading zero


def test_hard_pool_is_mostly_rare_columns_none_receiving_a_carry():
    pool = build_arith_pool(200, seed=0)
    columns = [rare_columns(p["question"]) for p in pool]
    share = sum(columns) / (len(pool) * HARD_DIFFICULTIES[0])
    assert 0.5 <= share <= HARD_RARE_RATE  # measured 0.545: carries into rare columns are out
    assert {p["difficulty"] for p in pool} == set(HARD_DIFFICULTIES)
    for problem in pool:  # brute force: the carry into each column, from the column steps
        steps = column_steps(problem["question"])
        for (x, y), step in zip(operand_columns(problem["question"]), steps, strict=True):
            carry_in = int(step.split("=")[0].split("+")[2])
            assert not (is_rare(x, y) and carry_in), problem


def test_carried_rare_columns_by_hand():
    assert carried_rare_columns("17+25") == 0  # 7+5 gets no carry; 1+2 is not rare
    assert carried_rare_columns("29+78") == 1  # 9+8 carries into 2+7
    assert carried_rare_columns("79+78") == 1  # 9+8 carries into 7+7; the units hold no 7
    assert carried_rare_columns("777+777") == 2  # 7+7 carries into both higher columns


def test_teacher_works_columns_in_letters_by_hand():
    # 7+5+0=12, then 4+8+1=13, with a=0 ... j=9
    assert teacher_text("47+85", "132") == (
        "<question>47+85</question> <answer>h+f+a=bc,e+i+b=bd \\boxed{132}</answer>"
    )
    assert (
        teacher_text("7+5", "12")
        == "<question>7+5</question> <answer>h+f+a=bc \\boxed{12}</answer>"
    )


def test_teacher_work_shares_no_digit_with_the_student_work():
    rng = random.Random(5)
    for difficulty in (1, 2, 4):
        problem = make_problem(rng, difficulty)
        text = teacher_text(problem["question"], problem["answer"])
        work = text.split("<answer>")[1].split("\\boxed")[0]
        assert not any(c.isdigit() for c in work), work
