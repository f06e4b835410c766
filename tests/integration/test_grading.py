"""Grading students: greedy correctness as the reward's accuracy on Q_R sees it, with the real
answer checker, on the trained tiny model (it solves one- and two-digit sums greedily)."""

import pytest

from soar.arith import ARITH
from soar.grading import answer_checker, greedy_accuracy, greedy_correct
from soar.prompts import last_boxed

SUMS = [(3, 4), (12, 30), (25, 16)]  # no operand digit is 7 (soar/arith.py: the rare digit)
MAX_NEW_TOKENS = 64


def test_greedy_correct_grades_the_greedy_completion(tiny_sampler):
    prompts = [ARITH.student_prompt(f"{a}+{b}") for a, b in SUMS]
    greedy = tiny_sampler.generate(prompts, temperature=0, max_new_tokens=MAX_NEW_TOKENS)
    # The model's greedy answer is the sum each time, so a False below comes from the reference.
    assert [last_boxed(g[0].text) for g in greedy] == [str(a + b) for a, b in SUMS]
    questions = [{"question": f"{a}+{b}", "answer": str(a + b)} for a, b in SUMS]
    questions[1]["answer"] = str(sum(SUMS[1]) + 1)  # a wrong reference
    with answer_checker() as check:
        correct = greedy_correct(
            tiny_sampler,
            questions,
            domain=ARITH,
            max_new_tokens=MAX_NEW_TOKENS,
            check=check,
        )
    assert correct == [True, False, True]
    accuracy = greedy_accuracy(tiny_sampler, questions, domain=ARITH, max_new_tokens=MAX_NEW_TOKENS)
    assert accuracy == pytest.approx(2 / 3)
