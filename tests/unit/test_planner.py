"""The planner: which stages run next, from nothing but the spec and the completed stages."""

from soar.planner import (
    Stage,
    committed_step,
    evaluation_steps,
    is_complete,
    plan,
    student_groups,
)
from tests.support.manifests import MINIMAL, parsed


def spec_of(**fields):
    return parsed("p", {**MINIMAL, "steps": 2}, **fields).spec


def keys(stages):
    return [s.key for s in stages]


def drive(spec) -> list[list[str]]:
    """Complete every planned stage, wave by wave, as an executor would."""
    done: set[str] = set()
    waves = []
    while stages := plan(spec, done):
        waves.append(keys(stages))
        done |= set(keys(stages))
    assert is_complete(spec, done)
    return waves


def test_soar_run_order():
    spec = spec_of(teacher={"datasets": 2}, student={"repeats": 2}, evaluation={"every": 1})
    assert drive(spec) == [
        ["prepare"],
        ["0/evaluate", "1/teacher-generate", "1/baseline"],
        ["1/student-0", "1/student-1", "1/student-2", "1/student-3"],
        ["1/teacher-update"],
        ["1/evaluate", "2/teacher-generate", "2/baseline"],
        ["2/student-0", "2/student-1", "2/student-2", "2/student-3"],
        ["2/teacher-update"],
        ["2/evaluate"],
    ]


def test_only_missing_students_are_replanned():
    spec = spec_of(teacher={"datasets": 2}, student={"repeats": 2})
    done = {"prepare", "0/evaluate", "1/teacher-generate", "1/baseline", "1/student-1"}
    assert keys(plan(spec, done)) == ["1/student-0", "1/student-2", "1/student-3"]


def test_batched_students_make_one_stage_per_group_of_students_per_stage():
    # g = 3 datasets x r = 3 repeats = 9 students, 4 a stage: groups 0-3, 4-7, 8.
    lora = {"rank": 4, "alpha": 8}
    spec = spec_of(
        teacher={"datasets": 3},
        student={"repeats": 3, "lora": lora},
        training={"studentsPerStage": 4},
    )
    assert [list(g) for g in student_groups(spec)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    done = {"prepare", "0/evaluate", "1/teacher-generate", "1/baseline"}
    assert keys(plan(spec, done)) == ["1/student-0", "1/student-1", "1/student-2"]
    done |= {"1/student-0", "1/student-1", "1/student-2"}
    assert keys(plan(spec, done)) == ["1/teacher-update"]


def test_learnability_probes_one_student_per_dataset():
    learn = spec_of(teacher={"datasets": 3}, reward={"kind": "learnability"})
    assert keys(plan(learn, {"prepare", "0/evaluate"})) == ["1/teacher-generate"]
    done = {"prepare", "0/evaluate", "1/teacher-generate"}
    assert keys(plan(learn, done)) == ["1/student-0", "1/student-1", "1/student-2"]


def test_fresh_student_trains_stage_by_stage_and_evaluates_beside():
    # 25 RLOO steps in stages of 10: 3 train stages; evaluations 0 (the base model) to 3.
    hard = spec_of(mode="hard-only", freshStudent={"maxSteps": 25, "segmentSteps": 10})
    assert drive(hard) == [
        ["prepare"],
        ["0/evaluate", "1/train"],
        ["1/evaluate", "2/train"],
        ["2/evaluate", "3/train"],
        ["3/evaluate"],
    ]


def test_fresh_student_waits_for_the_evaluation_whose_checkpoint_it_deletes():
    hard = spec_of(mode="hard-only", freshStudent={"maxSteps": 40, "segmentSteps": 10})
    # train 3 deletes checkpoint 1: not before evaluate 1 has read it
    done = {"prepare", "0/evaluate", "1/train", "2/train"}
    assert keys(plan(hard, done)) == ["1/evaluate", "2/evaluate"]
    # the last evaluation chooses from all the others: it waits for evaluate 2
    done = {"prepare", "0/evaluate", "1/evaluate", "1/train", "2/train", "3/train", "4/train"}
    assert keys(plan(hard, done)) == ["2/evaluate", "3/evaluate"]
    assert committed_step(hard, done) == 4


def test_steps_commit_in_order():
    spec = spec_of(steps=5)
    done = {"prepare", "1/teacher-update", "2/teacher-update", "4/teacher-update"}
    assert committed_step(spec, done) == 2


def test_evaluation_steps_include_base_and_last():
    assert evaluation_steps(spec_of(steps=25, evaluation={"every": 10})) == [0, 10, 20, 25]


def test_argv_is_the_same_command_everywhere():
    stage = Stage("student", 3, 5)
    assert stage.argv("file:///r") == [
        "soar",
        "stage",
        "student",
        "--run",
        "file:///r",
        "--step",
        "3",
        "--index",
        "5",
    ]
