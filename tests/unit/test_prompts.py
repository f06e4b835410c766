"""The MATH teacher prompt: the paper's five parts in order, and no problem of its own."""

import re

from soar.prompts import MATH_SUBJECTS, MATH_TEACHER_PROMPT, TeacherPair, parse_teacher_output

FORMAT = "<question>the problem statement</question><answer>\\boxed{the final answer}</answer>"


def test_teacher_prompt_has_the_five_parts_in_order():
    parts = [
        "train a student",  # 1) the role
        "ONE new problem",  # 2) the task
        ", ".join(MATH_SUBJECTS),  # 3) the seven subjects
        "Requirements:",  # 4) the requirements
        FORMAT,  # 5) the exact output format
    ]
    positions = [MATH_TEACHER_PROMPT.find(part) for part in parts]
    assert -1 not in positions, dict(zip(parts, positions, strict=True))
    assert positions == sorted(positions)
    assert len(MATH_SUBJECTS) == 7
    for requirement in ("single final answer", "known source", "competition"):
        assert requirement in MATH_TEACHER_PROMPT
    assert "reason first, outside the tags" in MATH_TEACHER_PROMPT
    assert MATH_TEACHER_PROMPT.endswith(FORMAT + "\n")


def test_teacher_prompt_holds_no_problem():
    # No numbers or formulas that a teacher could copy; its format line's placeholders are words.
    assert not re.search(r"[0-9$=^]", MATH_TEACHER_PROMPT)
    # a teacher that copies the format line has written no problem: refused, though the
    # verifier would parse "the final answer"
    assert parse_teacher_output(MATH_TEACHER_PROMPT) is None
    assert parse_teacher_output(FORMAT.replace("the final answer", "42")) is None
    real = "<question>What is 6 times 7?</question><answer>\\boxed{42}</answer>"
    assert parse_teacher_output(real) == TeacherPair("What is 6 times 7?", "42")
