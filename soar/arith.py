"""A tiny arithmetic domain (sums of two n-digit numbers) that a small model learns on CPU.

Difficulty is the number of digits of each operand. A student's worked solution adds the columns
least-significant digit first, one short step per column with the carry written out:
`47+85` is solved as ` 7+5+0=12,4+8+1=13 \\boxed{132}`. Every step is a one-digit fact plus a copy.

What makes problems hard is one digit. A *rare column* is one that holds RARE_DIGIT (`7+5`,
`0+7`). The builtin tiny model's student lines hold rare columns only very rarely
(soar.tinymodel), so its column procedure is unsure of their facts: a 4-digit sum that is mostly
rare columns is rarely right in k samples (the hard split), while a one- or two-digit sum holding
the rare digit once is right now and then (a stepping stone RLOO can learn from). No rare column
of a hard problem receives a carry, so the facts a hard problem needs (`7+y+0`) are ones the
stepping stones show. The teacher writes sums of one and two digits with its own column work in
letters (teacher_text), from a corpus where every digit is equally likely: about a third of what
it writes are stepping stones, 40% of those with the rare fact in the tens column, where the
hard problems hold it too, and its answers are right far more often than the student's own work.
Measured on the builtin model (benchmarks/testbed.py --long-steps 192 --seeds 0 1 2; docs/design.md,
"The CPU testbed"): 15 RLOO steps on 32 of the teacher's stepping stones lift greedy accuracy on 96
hard problems by 0.059 (sd 0.039; on 32 of its other sums 0.000), and 64 steps on them before 128
on the hard split reach 0.136 on hard test (0.265, 0.034, 0.109), against 0.018 (0.048, 0.000,
0.007) for 192 steps on the hard split alone. The hard split is also hard because this student
miscopies digits of long sums (greedy 0.225 on 4-digit sums without the rare digit); a recipe
whose student copies well lets the hard split alone learn (docs/design.md).
"""

import random
import re
from collections.abc import Callable

from soar.prompts import Domain

ARITH = Domain(
    name="arith",
    teacher_prompt="Write an addition problem.\n",
    student_preamble="",
)

QUESTION_FORMAT = re.compile(r"(\d+)\+(\d+)")
RARE_DIGIT = 7
# The hard pool: 4-digit sums (the longest the tiny model learns) whose columns are rare with
# probability 3/4 (about 2 in 4 once carries into rare columns are excluded). A fail@k filter
# over it leaves a hard split: sums the model adds column by column, but for the rare digit's.
HARD_DIFFICULTIES = (4,)
HARD_RARE_RATE = 0.75

# Draws a column's two digits, given whether it is the leading column (no zeros there).
PairDrawer = Callable[[random.Random, bool], tuple[int, int]]


def uniform_pair(rng: random.Random, leading: bool) -> tuple[int, int]:
    low = 1 if leading else 0
    return rng.randint(low, 9), rng.randint(low, 9)


def is_rare(x: int, y: int) -> bool:
    """A column whose facts the tiny model's student lines hardly ever show."""
    return RARE_DIGIT in (x, y)


def pair_of_kind(rng: random.Random, leading: bool, rare: bool) -> tuple[int, int]:
    """A column uniform among the rare ones, or among the others."""
    while True:
        x, y = uniform_pair(rng, leading)
        if is_rare(x, y) == rare:
            return x, y


def rare_rate_pair(rate: float) -> PairDrawer:
    """Columns that are rare with probability `rate`, each uniform among its kind."""

    def draw(rng: random.Random, leading: bool) -> tuple[int, int]:
        return pair_of_kind(rng, leading, rng.random() < rate)

    return draw


def make_problem(rng: random.Random, difficulty: int, pair: PairDrawer = uniform_pair) -> dict:
    """A sum of two numbers with `difficulty` digits each (no leading zeros), with its answer.

    `pair` draws each column's digits, least significant first; the default makes each operand
    uniform over the numbers with that many digits."""
    if difficulty < 1:
        raise ValueError(f"difficulty must be >= 1, got {difficulty}")
    columns = [pair(rng, difficulty > 1 and i == difficulty - 1) for i in range(difficulty)]
    a = int("".join(str(x) for x, _ in reversed(columns)))
    b = int("".join(str(y) for _, y in reversed(columns)))
    return {"question": f"{a}+{b}", "answer": str(a + b), "difficulty": difficulty}


def operand_columns(question: str) -> list[tuple[int, int]]:
    """The digit pairs of a sum, least significant first; the shorter operand is padded with 0."""
    match = QUESTION_FORMAT.fullmatch(question.strip())
    if match is None:
        raise ValueError(f"not a sum of two whole numbers: {question!r}")
    a, b = (digits[::-1] for digits in match.groups())
    return [
        (int(a[i]) if i < len(a) else 0, int(b[i]) if i < len(b) else 0)
        for i in range(max(len(a), len(b)))
    ]


def rare_columns(question: str) -> int:
    """How many columns of a sum hold the rare digit (0 for text that is not a sum)."""
    if QUESTION_FORMAT.fullmatch(question.strip()) is None:
        return 0
    return sum(is_rare(x, y) for x, y in operand_columns(question))


def carried_rare_columns(question: str) -> int:
    """How many rare columns of a sum receive a carry: their facts (`7+y+1`) are not the ones a
    one-digit stepping stone shows."""
    count, carry = 0, 0
    for x, y in operand_columns(question):
        count += is_rare(x, y) and carry == 1
        carry = (x + y + carry) // 10
    return count


def column_steps(question: str) -> list[str]:
    """`x+y+carry=sum` per column, least significant first; the shorter operand is padded with 0."""
    steps, carry = [], 0
    for x, y in operand_columns(question):
        total = x + y + carry
        steps.append(f"{x}+{y}+{carry}={total}")
        carry = total // 10
    return steps


def solution_text(question: str, answer: str) -> str:
    """The student's worked solution: the column steps, then `answer` boxed (taken as given)."""
    return " " + ",".join(column_steps(question)) + f" \\boxed{{{answer}}}"


# The teacher's scratch digits: a letter per digit, so its column work shares no token with the
# student's and teaches the student none of the rare digit's facts.
TEACHER_DIGITS = str.maketrans("0123456789", "abcdefghij")


def teacher_text(question: str, answer: str) -> str:
    """The teacher's output: the tagged problem, its column work in letters, and the answer.

    `47+85` is `<question>47+85</question> <answer>h+f+a=bc,e+i+b=bd \\boxed{132}</answer>`.
    The teacher sees every digit equally often, so its letter facts are sure where the student's
    rare-digit facts are not: its answers are a better reference than the student's own samples,
    which RLOO needs to learn anything from them.
    """
    work = ",".join(step.translate(TEACHER_DIGITS) for step in column_steps(question))
    return f"<question>{question}</question> <answer>{work} \\boxed{{{answer}}}</answer>"


def distinct_problems(difficulty: int) -> int:
    """How many different questions make_problem can draw at this difficulty."""
    numbers = 10 if difficulty == 1 else 9 * 10 ** (difficulty - 1)
    return numbers * numbers


def build_arith_pool(
    n: int,
    seed: int,
    difficulties: tuple[int, ...] = HARD_DIFFICULTIES,
    rare_rate: float = HARD_RARE_RATE,
) -> list[dict]:
    """n distinct problems, spread evenly over the difficulties, each column rare with
    probability `rare_rate` (other values than HARD_RARE_RATE are for benchmarks/testbed.py) and
    no rare column receiving a carry (so the facts a hard problem needs are those of one-digit
    stepping stones), for a fail@k filter to sift."""
    per_difficulty = -(-n // len(difficulties))
    too_few = [d for d in difficulties if per_difficulty > distinct_problems(d)]
    if too_few:
        raise ValueError(f"cannot draw {per_difficulty} distinct problems of difficulty {too_few}")
    rng = random.Random(seed)
    pair = rare_rate_pair(rare_rate)
    pool: list[dict] = []
    seen: set[str] = set()
    while len(pool) < n:
        problem = make_problem(rng, difficulties[len(pool) % len(difficulties)], pair)
        question = problem["question"]
        if question not in seen and not carried_rare_columns(question):
            seen.add(problem["question"])
            pool.append(problem)
    return pool
