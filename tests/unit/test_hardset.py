"""The fail@k hard-set builder and the JSONL problem files it reads and writes."""

import gzip
import json

import pytest

from soar.hardset import build_hard_set, read_problems, split_in_half, write_jsonl
from soar.prompts import MATH
from soar.sampler import Sample
from soar.verify import AnswerChecker


class ScriptedSampler:
    """Test double for the Sampler protocol, to test the builder's logic, not a model.

    It solves the problems in `solvable` (question -> an answer equal to the reference in another
    form) in exactly the last of its n samples, and gets every other sample wrong. It records each
    call so that tests can check what the builder asked for.
    """

    tokenizer = None  # no chat template: prompts in the plain format

    def __init__(self, solvable: dict[str, str]):
        self.solvable = solvable
        self.calls: list[dict] = []

    def generate(self, prompts, *, n=1, temperature=1.0, max_new_tokens=256, seed=0, adapters=None):
        self.calls.append(
            {
                "prompts": list(prompts),
                "n": n,
                "temperature": temperature,
                "seed": seed,
                "max_new_tokens": max_new_tokens,
            }
        )
        return [[self._sample(prompt, last=i == n - 1) for i in range(n)] for prompt in prompts]

    def _sample(self, prompt: str, last: bool) -> Sample:
        answer = next((a for q, a in self.solvable.items() if q in prompt), None)
        text = f"So it is \\boxed{{{answer}}}." if last and answer else "I think \\boxed{-1}."
        return Sample(text, token_ids=[], logprobs=[], finished=True)


PROBLEMS = [{"id": f"p{i}", "question": f"Question {i}?", "answer": str(i + 1)} for i in range(10)]
SOLVABLE = {"Question 1?": "2.0", "Question 4?": "\\frac{10}{2}", "Question 7?": "8"}


@pytest.fixture(scope="module")
def checker():
    with AnswerChecker(workers=1) as c:
        yield c


def build(sampler, checker, **overrides):
    options = {"k": 3, "max_new_tokens": 64, "temperature": 0.7, "seed": 5, "chunk_size": 4}
    options.update(overrides)
    return build_hard_set(sampler, MATH, PROBLEMS, checker=checker, **options)


def test_hard_set_keeps_only_problems_never_solved_and_splits_them(checker):
    train, test = build(ScriptedSampler(SOLVABLE), checker)
    assert len(train) == 4 and len(test) == 3
    kept = {p["id"] for p in train} | {p["id"] for p in test}
    assert kept == {"p0", "p2", "p3", "p5", "p6", "p8", "p9"}
    assert not {p["id"] for p in train} & {p["id"] for p in test}


def test_hard_set_split_is_deterministic_in_the_seed(checker):
    first = build(ScriptedSampler(SOLVABLE), checker, seed=1)
    assert build(ScriptedSampler(SOLVABLE), checker, seed=1) == first
    assert build(ScriptedSampler(SOLVABLE), checker, seed=2) != first


def test_hard_set_asks_the_sampler_for_k_student_samples_per_problem(checker):
    sampler = ScriptedSampler({})
    done = []
    build(sampler, checker, on_progress=done.append)
    assert [len(call["prompts"]) for call in sampler.calls] == [4, 4, 2]
    assert done == [4, 8, 10]
    first = sampler.calls[0]
    assert first["prompts"][0] == MATH.student_prompt("Question 0?")
    assert (first["n"], first["temperature"], first["max_new_tokens"]) == (3, 0.7, 64)
    assert len({call["seed"] for call in sampler.calls}) == 3


def test_hard_set_rejects_k_below_one(checker):
    with pytest.raises(ValueError, match="k must be >= 1"):
        build(ScriptedSampler({}), checker, k=0)


def test_split_in_half_gives_train_the_odd_row():
    rows = [{"id": i} for i in range(5)]
    train, test = split_in_half(rows, seed=0)
    assert (len(train), len(test)) == (3, 2)
    assert sorted(r["id"] for r in train + test) == list(range(5))


def test_read_problems_maps_fields_and_fills_ids(tmp_path):
    path = tmp_path / "math.jsonl"
    rows = [
        {"unique_id": "a/1", "problem": "What is 1+1?", "answer": "2", "level": "Level 1"},
        {"problem": "What is 2+2?", "answer": 4},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    problems = read_problems(path, question_field="problem", id_field="unique_id")
    assert problems == [
        {"id": "a/1", "question": "What is 1+1?", "answer": "2"},
        {"id": "math.jsonl:2", "question": "What is 2+2?", "answer": "4"},
    ]


def test_read_problems_reads_gzip_and_round_trips_through_write_jsonl(tmp_path):
    problems = [{"id": "x", "question": "Is $\\pi > 3$? ünïcode", "answer": "\\text{yes}"}]
    write_jsonl(tmp_path / "out" / "hard.jsonl", problems)
    assert read_problems(tmp_path / "out" / "hard.jsonl") == problems
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["hard.jsonl"]
    with gzip.open(tmp_path / "hard.jsonl.gz", "wt") as f:
        f.write(json.dumps(problems[0]) + "\n")
    assert read_problems(tmp_path / "hard.jsonl.gz") == problems


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        ('{"question": "q", "answer": ', r"bad\.jsonl:2: invalid JSON: Expecting value"),
        (
            '{"question": "q", "solution": "s"}',
            r"bad\.jsonl:2: missing field 'answer' \(fields: question, solution\)",
        ),
        ('["q", "a"]', r"bad\.jsonl:2: expected a JSON object, got list"),
        (
            '{"question": " ", "answer": "1"}',
            r"bad\.jsonl:2: field 'question' must be a non-empty string",
        ),
        (
            '{"question": "q", "answer": null}',
            r"bad\.jsonl:2: field 'answer' must be a non-empty string",
        ),
        (
            '{"id": 1, "question": "q", "answer": "1"}',
            r"bad\.jsonl:2: duplicate id '1' \(first on line 1\)",
        ),
    ],
    ids=[
        "invalid-json",
        "missing-field",
        "not-an-object",
        "blank-question",
        "null-answer",
        "dup-id",
    ],
)
def test_read_problems_names_file_and_line_of_a_bad_row(tmp_path, second_line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1, "question": "q0", "answer": "0"}\n' + second_line + "\n")
    with pytest.raises(ValueError, match=message):
        read_problems(path)
