"""A tiny arithmetic domain (sums of two n-digit numbers) that a small model learns on CPU.

Difficulty is the number of digits of each operand. A student's worked solution adds the columns
least-significant digit first, one short step per column with the carry written out:
`47+85` is solved as ` 7+5+0=12,4+8+1=13 \\boxed{132}`. Every step is a one-digit fact plus a copy,
so a 0.3M-parameter model learns the procedure in a few hundred steps, yet fails on numbers longer
than it was trained on: the domain has a genuine hard split.
"""

import random
import re

from soar.prompts import Domain

ARITH = Domain(
    name="arith",
    teacher_prompt="Write an addition problem.\n",
    student_preamble="",
)

QUESTION_FORMAT = re.compile(r"(\d+)\+(\d+)")
# Where the builtin tiny model (soar.tinymodel) is weak: it saw 5-digit sums rarely in training,
# and 6-digit ones never. A fail@k filter over a pool drawn here leaves a genuine hard split.
HARD_DIFFICULTIES = (5, 6)


def make_problem(rng: random.Random, difficulty: int) -> dict:
    """A sum of two numbers with `difficulty` digits each (no leading zeros), with its answer."""
    if difficulty < 1:
        raise ValueError(f"difficulty must be >= 1, got {difficulty}")
    low = 0 if difficulty == 1 else 10 ** (difficulty - 1)
    a = rng.randint(low, 10**difficulty - 1)
    b = rng.randint(low, 10**difficulty - 1)
    return {"question": f"{a}+{b}", "answer": str(a + b), "difficulty": difficulty}


def column_steps(question: str) -> list[str]:
    """`x+y+carry=sum` per column, least significant first; the shorter operand is padded with 0."""
    match = QUESTION_FORMAT.fullmatch(question.strip())
    if match is None:
        raise ValueError(f"not a sum of two whole numbers: {question!r}")
    a, b = (digits[::-1] for digits in match.groups())
    steps, carry = [], 0
    for i in range(max(len(a), len(b))):
        x = int(a[i]) if i < len(a) else 0
        y = int(b[i]) if i < len(b) else 0
        total = x + y + carry
        steps.append(f"{x}+{y}+{carry}={total}")
        carry = total // 10
    return steps


def solution_text(question: str, answer: str) -> str:
    """The student's worked solution: the column steps, then `answer` boxed (taken as given)."""
    return " " + ",".join(column_steps(question)) + f" \\boxed{{{answer}}}"


def teacher_text(question: str, answer: str) -> str:
    """The teacher's output: the tagged problem, with its column work between the tags.

    The work sits outside both tags (parse_teacher_output ignores it) and lets the teacher's
    answers be as accurate as the model's own sums: a tiny model cannot add long numbers in one go.
    """
    work = ",".join(column_steps(question))
    return f"<question>{question}</question> {work} <answer>\\boxed{{{answer}}}</answer>"


def distinct_problems(difficulty: int) -> int:
    """How many different questions make_problem can draw at this difficulty."""
    numbers = 10 if difficulty == 1 else 9 * 10 ** (difficulty - 1)
    return numbers * numbers


def build_arith_pool(
    n: int, seed: int, difficulties: tuple[int, ...] = HARD_DIFFICULTIES
) -> list[dict]:
    """n distinct problems, spread evenly over the difficulties, for a fail@k filter to sift."""
    per_difficulty = -(-n // len(difficulties))
    too_few = [d for d in difficulties if per_difficulty > distinct_problems(d)]
    if too_few:
        raise ValueError(f"cannot draw {per_difficulty} distinct problems of difficulty {too_few}")
    rng = random.Random(seed)
    pool: list[dict] = []
    seen: set[str] = set()
    while len(pool) < n:
        problem = make_problem(rng, difficulties[len(pool) % len(difficulties)])
        if problem["question"] not in seen:
            seen.add(problem["question"])
            pool.append(problem)
    return pool
