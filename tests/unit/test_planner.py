"""The planner: which stages run next, from nothing but the spec and the completed stages."""

from soar.planner import Stage, committed_step, evaluation_steps, is_complete, plan
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


def test_learnability_and_hard_only():
    learn = spec_of(teacher={"datasets": 3}, reward={"kind": "learnability"})
    assert keys(plan(learn, {"prepare", "0/evaluate"})) == ["1/teacher-generate"]
    done = {"prepare", "0/evaluate", "1/teacher-generate"}
    assert keys(plan(learn, done)) == ["1/student-0", "1/student-1", "1/student-2"]
    hard = spec_of(mode="hard-only")
    assert keys(plan(hard, {"prepare", "0/evaluate"})) == ["1/baseline"]
    assert keys(plan(hard, {"prepare", "0/evaluate", "1/baseline"})) == ["1/student-0"]


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
