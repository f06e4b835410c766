"""The typed records read what earlier versions wrote and write it back unchanged."""

import json

import pytest

from soar import layout, records
from soar.store import FileStore

# A step record of a grounded SOAR run as version 0.1 wrote it (window not yet full: MA null).
SOAR_RECORD = {
    "baseline": None,
    "baseline_accuracy": 0.25,
    "dataset_rewards": [0.0625, -0.0625],
    "generation": {"acceptance": 0.9, "attempts": 10, "vendi": 3.5},
    "history": [0.0],
    "moving_average": None,
    "promoted": False,
    "promotions": 0,
    "step": 1,
    "student_rewards": [[0.0625, 0.0625], [-0.0625, -0.0625]],
    "teacher": {
        "advantages": [0.125, -0.125],
        "grad_norm": 0.5,
        "kl": 0.0,
        "loss": 0.1,
        "lr": 1e-4,
    },
    "teacher_reward": 0.0,
}
PROMOTED_RECORD = SOAR_RECORD | {
    "baseline": "checkpoints/student/1",
    "history": [],
    "moving_average": 0.03125,
    "promoted": True,
    "promoted_student": 1,
    "promotions": 1,
}
LEARNABILITY_RECORD = {
    k: v for k, v in SOAR_RECORD.items() if k not in ("baseline_accuracy", "history")
} | {"history": [], "student_rewards": [[0.5], [0.25]], "dataset_rewards": [0.5, 0.25]}


@pytest.mark.parametrize("doc", [SOAR_RECORD, PROMOTED_RECORD, LEARNABILITY_RECORD])
def test_step_records_round_trip_to_the_same_json(doc):
    record = records.StepRecord.from_json(doc)
    assert record.to_json() == doc


def test_hard_only_record_gains_only_a_null_moving_average():
    old = {
        "baseline": "checkpoints/student/3",
        "baseline_accuracy": 0.5,
        "history": [],
        "promoted_student": 0,
        "promotions": 3,
        "step": 3,
        "student_rewards": [[0.125]],
    }
    assert records.StepRecord.from_json(old).to_json() == old | {"moving_average": None}


def test_student_result_keeps_a_null_dataset_and_drops_absent_fields():
    hard_only = {"dataset": None, "repeat": 0, "reward": 0.5, "inner_steps": 4, "accuracy": 0.75}
    assert records.StudentResult.from_json(hard_only).to_json() == hard_only
    probe = {"dataset": 2, "repeat": 0, "reward": 0.25, "success_rates": [0.5, 1.0]}
    assert records.StudentResult.from_json(probe).to_json() == probe


def test_evaluation_reads_k_as_integers_and_writes_them_in_numeric_order(tmp_path):
    store = FileStore(tmp_path)
    on_disk = {
        "baseline": None,
        "hard_train_accuracy": 0.0,
        "pass_at_k": {"1": 0.125, "16": 0.5, "4": 0.25},
        "problems": 8,
        "step": 0,
    }
    store.write_bytes(layout.evaluation(0), json.dumps(on_disk).encode())
    evaluation = layout.load(store, layout.evaluation(0), records.Evaluation)
    assert evaluation.pass_at_k == {1: 0.125, 4: 0.25, 16: 0.5}
    layout.save(store, layout.evaluation(0), evaluation)
    text = store.read_bytes(layout.evaluation(0)).decode()
    assert text.index('"1"') < text.index('"4"') < text.index('"16"')
    assert json.loads(text) == on_disk


def test_keys_are_the_documented_layout():
    assert layout.step_record(12) == "steps/12/record.json"
    assert layout.student_model(3, 5) == "steps/3/students/5/model"
    assert layout.student_result(3, 5) == "steps/3/students/5/result.json"
    assert layout.teacher_optimizer(7) == "checkpoints/teacher/7-optimizer.pt"
    assert (
        layout.baseline_cache("checkpoints/student/2")
        == "baseline-cache/checkpoints/student/2.json"
    )
    assert (
        layout.train_accuracy("checkpoints/student/2")
        == "eval/train-accuracy/checkpoints-student-2.json"
    )
    assert layout.train_accuracy(None) == "eval/train-accuracy/base.json"
    assert layout.done("4/student-3") == "done/4/student-3.json"
