"""A damaged store is named, not a traceback: corrupt or missing records say which key and which
completion manifest to delete; an emptied manifest counts as not done; a changed spec names the
field; data paths stay editable until prepare has run."""

import json

import pytest

from soar import layout, records
from soar.manifest import parse_run
from soar.runstate import completed, init_store
from soar.spec import SpecError
from soar.store import FileStore, RecordError
from tests.support.manifests import MINIMAL, merge, soarrun


@pytest.fixture
def store(tmp_path):
    return FileStore(tmp_path)


def test_corrupt_record_names_its_key_and_the_stage_to_rerun(store):
    store.write_bytes(layout.step_record(3), b'{"step": 3, "baseli')
    with pytest.raises(RecordError) as err:
        layout.load(store, layout.step_record(3), records.StepRecord)
    assert str(err.value) == (
        f"{store.uri}/steps/3/record.json: corrupt, not JSON (Unterminated string starting at); "
        "delete done/3/teacher-update.json to run stage 3/teacher-update again"
    )


def test_missing_record_names_its_key(store):
    with pytest.raises(
        RecordError,
        match="steps/2/students/1/result.json: missing; delete "
        "done/2/student-1.json to run stage 2/student-1 again",
    ):
        layout.load(store, layout.student_result(2, 1), records.StudentResult)


def test_record_of_the_wrong_shape_is_named(store):
    store.write_bytes(layout.evaluation(4), json.dumps({"step": 4}).encode())
    with pytest.raises(RecordError, match="eval/4.json: not a Evaluation .*done/4/evaluate.json"):
        layout.load(store, layout.evaluation(4), records.Evaluation)


def test_corrupt_jsonl_names_key_and_line(store):
    store.write_bytes(layout.candidates(1), b'{"a": 1}\n{"a": \n')
    with pytest.raises(
        RecordError, match=r"steps/1/candidates.jsonl:2: corrupt .*teacher-generate"
    ):
        layout.load_rows(store, layout.candidates(1))


def test_an_emptied_completion_manifest_counts_as_not_done(store):
    store.write_bytes(layout.done("1/baseline"), b'{"stage": "baseline"}')
    store.write_bytes(layout.done("1/student-0"), b"")
    assert completed(store) == {"1/baseline"}


def run_with(**data):
    return parse_run(soarrun(base=merge(MINIMAL, {"data": data} if data else {})))


def test_changed_algorithm_field_is_named(store, tmp_path):
    init_store(
        store, parse_run(soarrun(base=merge(MINIMAL, {"teacher": {"datasets": 4}}))), tmp_path
    )
    changed = parse_run(soarrun(base=merge(MINIMAL, {"teacher": {"datasets": 6}})))
    with pytest.raises(SpecError, match=r"different spec.teacher.datasets \(4 -> 6\)"):
        init_store(store, changed, tmp_path)


def test_data_stays_editable_until_prepare_has_completed(store, tmp_path):
    typo = run_with(builtin=None, hardTrain="trian.jsonl", hardTest="test.jsonl")
    init_store(store, typo, tmp_path)
    fixed = run_with(builtin=None, hardTrain="train.jsonl", hardTest="test.jsonl")
    frozen = init_store(store, fixed, tmp_path)
    assert frozen.data.hardTrain == str(tmp_path / "train.jsonl")
    stored = json.loads(store.read_bytes(layout.RUN))["spec"]["data"]["hardTrain"]
    assert stored == str(tmp_path / "train.jsonl")
    store.write_bytes(layout.done("prepare"), b"{}")
    with pytest.raises(SpecError, match=r"spec.data.hardTrain"):
        init_store(store, typo, tmp_path)
