"""Bad input is refused with one line naming what is wrong and where, at bounded cost: manifests
(size, alias bombs, nesting, non-finite numbers, oversized free-form fields) and data files
(missing, truncated or non-gzip, not UTF-8, huge lines, overlong fields)."""

import gzip
import json
import tracemalloc

import pytest
import yaml  # noqa: I001  (after the project imports: the test reads as the user's file)

from soar.hardset import DataError, read_problems
from soar.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_MANIFEST_NODES,
    SafeLoader,
    expanded_size,
    load_run,
)
from soar.spec import SpecError
from tests.support.manifests import merge, soarrun, write_manifest

MANIFEST_HEAD = "apiVersion: soar.dev/v1alpha1\nkind: SoarRun\nmetadata: {name: r}\n"


def refused(path) -> str:
    with pytest.raises(SpecError) as err:
        load_run(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_refused_naming_the_field(tmp_path, value):
    path = tmp_path / "run.yaml"
    path.write_text(
        MANIFEST_HEAD + f"spec:\n  data: {{builtin: arith}}\n  promotion: {{threshold: {value}}}\n"
    )
    assert "spec.promotion.threshold" in refused(path)


def test_alias_bomb_is_refused_before_it_expands(tmp_path):
    # Nine levels of ten aliases each: 10^9 env entries once expanded, 10 lines of YAML.
    lines = ["x0: &x0 {name: A, value: B}"]
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10)}]" for i in range(1, 10)]
    bomb = "\n".join(lines) + "\n"
    path = tmp_path / "run.yaml"
    path.write_text(
        bomb.replace("\n", "\n  ").join(["anchors:\n  ", ""])
        + MANIFEST_HEAD
        + "spec:\n  data: {builtin: arith}\n  pods: {default: {env: *x9}}\n"
    )
    tracemalloc.start()
    message = refused(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert f"more than {MAX_MANIFEST_NODES} YAML nodes" in message
    assert peak < 20 * 2**20  # the bomb was counted, never built


def test_expanded_size_counts_each_alias_as_a_copy():
    # a: [1, 2] is 3 nodes; b lists a three times: 1 + 3*3; the root mapping holds 2 keys.
    node = yaml.compose("a: &a [1, 2]\nb: [*a, *a, *a]\n")
    assert expanded_size(node, 1000) == 1 + (1 + 3) + (1 + 1 + 3 * 3)


def test_recursive_alias_counts_as_too_many(tmp_path):
    node = yaml.compose("a: &a [*a]\n", Loader=SafeLoader)  # libyaml builds the cycle
    assert expanded_size(node, 1000) > 1000
    path = tmp_path / "run.yaml"
    path.write_text(MANIFEST_HEAD + "spec: &s {data: {builtin: arith}, x: *s}\n")
    assert "more than 20000 YAML nodes" in refused(path)


def test_oversized_file_is_refused_without_parsing(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        MANIFEST_HEAD + "spec:\n  data: {builtin: arith}\n  x: [" + "1, " * 500_000 + "1]\n"
    )
    assert path.stat().st_size > MAX_MANIFEST_BYTES
    assert "larger than" in refused(path)


def test_deep_nesting_is_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(MANIFEST_HEAD + "spec: " + "[" * 50_000 + "]" * 50_000 + "\n")
    message = refused(path)
    assert "nested too deeply" in message or "YAML" in message


def test_oversized_free_form_field_is_refused(tmp_path):
    env = [{"name": f"V{i}", "value": "x" * 1000} for i in range(100)]  # ~100 KB of JSON
    doc = soarrun(base=merge({"data": {"builtin": "arith"}}, {"pods": {"default": {"env": env}}}))
    message = refused(write_manifest(tmp_path, doc))
    assert "spec.pods.default" in message and "env: larger than 64 KiB" in message


def test_overlong_list_is_refused_naming_it(tmp_path):
    tolerations = [{"key": f"k{i}", "operator": "Exists"} for i in range(300)]
    doc = soarrun(
        base=merge(
            {"data": {"builtin": "arith"}}, {"pods": {"student": {"tolerations": tolerations}}}
        )
    )
    assert "spec.pods.student.tolerations" in refused(write_manifest(tmp_path, doc))


# ------------------------------------------------------------------------------------ data files
def rows(n: int) -> str:
    return "".join(
        json.dumps({"question": f"{i}+1?", "answer": str(i + 1)}) + "\n" for i in range(n)
    )


def data_error(path, **limits) -> str:
    with pytest.raises(DataError) as err:
        read_problems(path, **limits)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file(tmp_path):
    assert "no such file" in data_error(tmp_path / "nope.jsonl")


def test_truncated_gzip(tmp_path):
    path = tmp_path / "hard.jsonl.gz"
    path.write_bytes(gzip.compress(rows(200).encode())[:-40])
    assert "not a complete gzip file" in data_error(path)


def test_not_gzip(tmp_path):
    path = tmp_path / "hard.jsonl.gz"
    path.write_text(rows(3))
    assert "not a complete gzip file" in data_error(path)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "hard.jsonl"
    path.write_bytes(rows(2).encode() + b'{"question": "\xff\xfe", "answer": "1"}\n')
    assert f"{path}:3: not UTF-8 text" in data_error(path)


def test_directory_instead_of_file(tmp_path):
    assert "is a directory" in data_error(tmp_path)


def test_huge_line_is_refused_after_reading_only_its_cap(tmp_path):
    path = tmp_path / "hard.jsonl"
    huge = json.dumps({"question": "q" * 5_000_000, "answer": "1"})
    path.write_text(rows(2) + huge + "\n")
    tracemalloc.start()
    message = data_error(path, max_question_chars=100, max_answer_chars=10)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # cap: 4 bytes a character * (100 + 10) + 65536 = 65976 bytes
    assert f"{path}:3: line longer than 65976 bytes" in message
    assert peak < 2 * 2**20


def test_overlong_question_names_file_line_and_cap(tmp_path):
    path = tmp_path / "hard.jsonl"
    path.write_text(rows(1) + json.dumps({"question": "q" * 101, "answer": "1"}) + "\n")
    message = data_error(path, max_question_chars=100)
    assert f"{path}:2: field 'question' has 101 characters, more than 100" in message


def test_rows_within_caps_are_read(tmp_path):
    path = tmp_path / "hard.jsonl.gz"
    path.write_bytes(gzip.compress(rows(3).encode()))
    problems = read_problems(path, max_question_chars=4, max_answer_chars=1)
    assert [p["answer"] for p in problems] == ["1", "2", "3"]


def test_invalid_rows_can_be_skipped_and_are_reported(tmp_path):
    path = tmp_path / "hard.jsonl"
    bad = json.dumps({"problem": "no answer", "answer": None})
    path.write_text(rows(2) + bad + "\n" + "{oops\n" + rows(1).replace("0+1?", "9+1?"))
    skipped: list[str] = []
    problems = read_problems(path, on_invalid_row=skipped.append)
    assert [p["answer"] for p in problems] == ["1", "2", "1"]
    assert skipped == [
        f"{path}:3: missing field 'question' (fields: problem, answer)",
        f"{path}:4: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
    ]
