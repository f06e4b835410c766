"""Grading students: the shaped reward of RLOO, greedy correctness (accuracy on Q_R) and sampled
correctness (pass@k, learnability, fail@k hard sets). Every answer is the completion's last
\\boxed{} content, checked against its reference by the math verifier's worker processes."""

from collections.abc import Iterator
from contextlib import contextmanager
from statistics import fmean
from typing import TYPE_CHECKING

from soar.prompts import Domain, last_boxed
from soar.verify import AnswerChecker

if TYPE_CHECKING:
    from soar.sampler import Sampler  # imports torch; only needed for the annotation


# The student's shaped reward (docs/design.md, "The algorithm").
REWARD_VERIFIED = 120.0
REWARD_CONTAINS_REFERENCE = 20.0
REWARD_BOXED = 10.0
REWARD_NO_BOX = 0.0


def shaped_rewards(
    checker: AnswerChecker, completions: list[str], references: list[str]
) -> list[float]:
    """120 verified, 20 wrong but containing the reference string, 10 boxed and wrong, 0 no box."""
    answers = _boxed_answers(completions)
    verified = _verify_boxed(checker, answers, references)
    return [
        _shaped_reward(answer, reference, ok)
        for answer, reference, ok in zip(answers, references, verified, strict=True)
    ]


def correct_many(
    checker: AnswerChecker, completions: list[str], references: list[str]
) -> list[bool]:
    """Whether each completion's last boxed answer verifies against its reference."""
    return _verify_boxed(checker, _boxed_answers(completions), references)


def _boxed_answers(completions: list[str]) -> list[str | None]:
    """The last \\boxed{} content of each completion; an empty or unclosed box is no answer."""
    answers = [last_boxed(text) for text in completions]
    return [answer if answer is not None and answer.strip() else None for answer in answers]


def _verify_boxed(
    checker: AnswerChecker, answers: list[str | None], references: list[str]
) -> list[bool]:
    """One batch for all boxed answers; the unboxed ones are wrong without a check."""
    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} completions but {len(references)} references")
    boxed = [i for i, answer in enumerate(answers) if answer is not None]
    verdicts = checker.check_many([(answers[i], references[i]) for i in boxed])
    correct = [False] * len(answers)
    for i, ok in zip(boxed, verdicts, strict=True):
        correct[i] = ok
    return correct


def _shaped_reward(answer: str | None, reference: str, verified: bool) -> float:
    if answer is None:
        return REWARD_NO_BOX
    if verified:
        return REWARD_VERIFIED
    if reference.strip() and reference.strip() in answer:
        return REWARD_CONTAINS_REFERENCE
    return REWARD_BOXED


# Inside keep_answer_checker(): the checker every answer_checker() hands out, once started.
_kept: list[AnswerChecker] | None = None


@contextmanager
def answer_checker() -> Iterator[AnswerChecker]:
    """The stages' checker: one worker process, 5 s per answer before it counts as wrong. Inside
    keep_answer_checker() it is one shared checker, left running when the `with` ends."""
    if _kept is None:
        with AnswerChecker(workers=1, timeout_s=5.0) as check:
            yield check
        return
    if _kept and not _kept[0].worker_pids:  # a batch that raised closed it
        _kept.clear()
    if not _kept:
        _kept.append(AnswerChecker(workers=1, timeout_s=5.0))
    yield _kept[0]


@contextmanager
def keep_answer_checker() -> Iterator[None]:
    """Let every stage run in this block share one checker: starting one costs ~0.4 s and a
    student stage uses two, which a warm stage worker (soar/worker.py) would pay per stage. It
    starts on first use, inside a stage, so a broken math-verify fails that stage as before (its
    processes then keep that stage's stdout and stderr)."""
    global _kept
    _kept = []
    try:
        yield
    finally:
        for check in _kept:
            check.close()
        _kept = None


def sampled_correct(
    sampler: "Sampler",
    questions: list[dict],
    *,
    domain: Domain,
    n: int,
    temperature: float,
    max_new_tokens: int,
    check: AnswerChecker,
    seed: int = 0,
    adapters: list[str] | None = None,
) -> list[list[bool]]:
    """[Q, n]: whether each of n samples per question ({"question", "answer"}) is correct;
    adapters: the LoRA adapter answering each question (Sampler.generate)."""
    groups = sampler.generate(
        [domain.student_prompt(q["question"], sampler.tokenizer) for q in questions],
        n=n,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        seed=seed,
        adapters=adapters,
    )
    texts = [s.text for group in groups for s in group]
    verdicts = correct_many(check, texts, [q["answer"] for q in questions for _ in range(n)])
    return [verdicts[i * n : (i + 1) * n] for i in range(len(questions))]


def greedy_correct(
    sampler: "Sampler",
    questions: list[dict],
    *,
    domain: Domain,
    max_new_tokens: int,
    check: AnswerChecker,
    adapters: list[str] | None = None,
) -> list[bool]:
    """[Q]: whether the greedy (temperature 0) completion of each question is correct."""
    rows = sampled_correct(
        sampler,
        questions,
        domain=domain,
        n=1,
        temperature=0.0,
        max_new_tokens=max_new_tokens,
        check=check,
        adapters=adapters,
    )
    return [row[0] for row in rows]


def greedy_accuracy(
    sampler: "Sampler", questions: list[dict], *, domain: Domain, max_new_tokens: int
) -> float:
    """Share of questions whose greedy completion is correct."""
    with answer_checker() as check:
        correct = greedy_correct(
            sampler, questions, domain=domain, max_new_tokens=max_new_tokens, check=check
        )
    return fmean(correct)
