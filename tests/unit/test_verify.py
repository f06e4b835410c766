"""Answer checking: math-verify's verdicts on tricky answers, the shaped reward, and isolation."""

import os
import signal
import threading
import time

import pytest

from soar.grading import correct_many, shaped_rewards
from soar.verify import AnswerChecker

# Real math-verify input that spins inside sympy's C code (9^(9^(9^9)) compared numerically with
# 3): math-verify's own signal-based timeout cannot stop it outside a main thread.
HANGING_PAIR = ("9^{9^{9^{9}}}", "3")


@pytest.fixture(scope="module")
def checker():
    with AnswerChecker(workers=2, timeout_s=20.0) as c:
        yield c


def test_check_many_judges_equivalent_forms(checker):
    cases = [
        ("\\frac{1}{2}", "0.5", True),
        ("0.5", "\\frac{1}{2}", True),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
        ("1,000", "1000", True),
        ("\\dfrac{3}{4}", "0.75", True),
        ("x^2+1", "1+x^2", True),
        ("2\\sqrt{3}", "\\sqrt{12}", True),
        ("\\{1,2\\}", "\\{2,1\\}", True),
        ("3", "4", False),
        ("\\pi", "3.14159", False),
        ("", "3", False),
        ("abc", "3", False),
    ]
    verdicts = checker.check_many([(c, r) for c, r, _ in cases])
    assert verdicts == [expected for _, _, expected in cases]


def test_check_many_empty_batch_and_duplicates(checker):
    assert checker.check_many([]) == []
    assert checker.check_many([("1", "1"), ("2", "1"), ("1", "1")]) == [True, False, True]


def test_parses_many_rejects_what_is_not_math(checker):
    answers = ["\\frac{1}{2}", "(-\\infty, 3]", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", "???", ""]
    assert checker.parses_many(answers) == [True, True, True, False, False]


def test_shaped_rewards_on_tricky_completions(checker):
    cases = [
        ("So the answer is \\boxed{\\frac{1}{2}}.", "0.5", 120.0),
        ("Hence \\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt{2}}", 120.0),
        ("Total: \\boxed{1,000}", "1000", 120.0),
        ("First \\boxed{4}, no wait: \\boxed{3}", "3", 120.0),  # the last box counts
        ("First \\boxed{3}, no wait: \\boxed{4}", "3", 10.0),
        ("\\boxed{3, 5}", "3", 20.0),  # wrong, but the reference string occurs in it
        ("\\boxed{7}", "3", 10.0),
        ("The answer is 3.", "3", 0.0),  # no box
        ("The answer is \\boxed{3", "3", 0.0),  # unclosed box
        ("The answer is \\boxed{}", "3", 0.0),  # empty box
    ]
    rewards = shaped_rewards(checker, [c for c, _, _ in cases], [r for _, r, _ in cases])
    assert rewards == [expected for _, _, expected in cases]


def test_correct_many_needs_a_verified_box(checker):
    completions = ["\\boxed{0.5}", "0.5", "\\boxed{0.4}"]
    assert correct_many(checker, completions, ["\\frac{1}{2}"] * 3) == [True, False, False]


def test_rewards_need_one_reference_per_completion(checker):
    with pytest.raises(ValueError, match="2 completions but 1 references"):
        shaped_rewards(checker, ["\\boxed{1}", "\\boxed{2}"], ["1"])


def test_hanging_check_is_wrong_within_the_deadline_and_the_checker_recovers():
    with AnswerChecker(workers=1, timeout_s=1.0) as checker:
        hung_pid = checker.worker_pids[0]
        start = time.monotonic()
        assert checker.check_many([HANGING_PAIR, ("0.5", "\\frac{1}{2}")]) == [False, True]
        assert time.monotonic() - start < 15.0  # 1 s deadline + a replacement worker's startup
        assert checker.worker_pids[0] != hung_pid
        assert checker.check_many([("2", "2")]) == [True]


def test_worker_crash_mid_check_is_wrong_and_the_checker_recovers():
    with AnswerChecker(workers=1, timeout_s=60.0) as checker:
        pid = checker.worker_pids[0]
        threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
        start = time.monotonic()
        assert checker.check_many([HANGING_PAIR, ("1", "1")]) == [False, True]
        assert time.monotonic() - start < 30.0  # well before the 60 s deadline
        assert checker.worker_pids[0] != pid


def test_closed_checker_refuses_work():
    checker = AnswerChecker(workers=1)
    checker.close()
    with pytest.raises(RuntimeError, match="closed"):
        checker.check_many([("1", "1")])


def test_worker_that_cannot_start_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "math_verify.py").write_text("raise ImportError('broken install')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # shadows the real math_verify in workers
    with pytest.raises(RuntimeError, match="died while starting"):
        AnswerChecker(workers=1)
