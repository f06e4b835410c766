"""How a step's stages wire their numbers together, with hand-computed expectations: student
index -> (dataset, repeat), R_kj = acc' - acc_base, the rewards grid and promotion, the inner
loop's length by promotion stage, the baseline cache, and which teacher checkpoints are kept.

Training and grading are replaced by fakes where the wiring, not the model, is under test; the
teacher update runs for real on a tiny random Llama.
"""

import contextlib
from pathlib import Path

import pytest

from soar import layout, records
from soar.checkpoints import has_checkpoint, save_checkpoint
from soar.runstate import Run, StageError, derive_seed
from soar.stages import outer_step, students, teacher
from soar.store import FileStore, write_jsonl
from soar.teacher import make_optimizer, optimizer_bytes
from tests.support.manifests import SMALL, merge, parsed
from tests.support.models import tiny_llama

HARD_TRAIN = [{"id": f"h{i}", "question": f"{i}+{i}", "answer": str(2 * i)} for i in range(8)]
# SMALL: g = 2 datasets x r = 2 repeats; two questions per dataset.
CANDIDATES = [
    {"id": f"t1-{i}", "dataset": i // 2, "question": f"q{i}", "answer": str(i), "token_ids": [i]}
    for i in range(4)
]


def small_run(root: Path, **spec) -> Run:
    """A SMALL run (2 datasets x 2 repeats) in a file:// store holding step 1's candidates and
    the hard train split."""
    store = FileStore(root)
    write_jsonl(store, layout.hard_split("train"), HARD_TRAIN)
    write_jsonl(store, layout.candidates(1), CANDIDATES)
    return Run(store, parsed(base=merge(SMALL, spec)).spec, uid="test")


def save_record(run: Run, t: int, promotions: int, baseline: str | None = None) -> None:
    record = records.StepRecord(
        step=t, baseline=baseline, promotions=promotions, history=[], student_rewards=[]
    )
    layout.save(run.store, layout.step_record(t), record)


# ------------------------------------------------------------------------------ student stage
@pytest.mark.parametrize(
    ("per_stage", "groups"), [(1, [[0], [1], [2], [3]]), (3, [[0, 1, 2], [3]])]
)
def test_student_index_is_dataset_times_repeats_plus_repeat(
    tmp_path, monkeypatch, per_stage, groups
):
    lora = {"rank": 2, "alpha": 4}
    run = small_run(tmp_path, training={"studentsPerStage": per_stage}, student={"lora": lora})
    layout.save(run.store, layout.baseline(1), records.Baseline(None, 0.25, {}))
    accuracy_after = {0: 0.5, 1: 0.25, 2: 0.75, 3: 0.125}  # greedy accuracy on Q_R per index
    trained_on: dict[int, list[str]] = {}
    trained_together: list[list[int]] = []
    by_seed = {derive_seed(run.spec.seed, "student", 1, i): i for i in range(4)}

    def train_students(model, tokenizer, learners, **settings):
        indices = [by_seed[learner.seed] for learner in learners]  # each learner's own seed
        trained_together.append(indices)
        for i, learner in zip(indices, learners, strict=True):
            trained_on[i] = [q["id"] for q in learner.questions]
        return [[{"loss": 0.0, "seconds": 0.0}] for _ in learners]

    def accuracies_on(run, model, tokenizer, questions, adapters):
        return [accuracy_after[i] for i in trained_together[-1]]

    monkeypatch.setattr(students, "load_checkpoint", lambda *args: tiny_llama())
    monkeypatch.setattr(students, "train_students", train_students)
    monkeypatch.setattr(students, "accuracies_on", accuracies_on)
    monkeypatch.setattr(students, "save_student", lambda *args: None)

    for index in range(len(groups)):
        outer_step.student(run, 1, index)
    assert trained_together == groups
    with pytest.raises(StageError, match=rf"--index must be in \[0, {len(groups)}\)"):
        outer_step.student(run, 1, len(groups))
    results = [
        layout.load(run.store, layout.student_result(1, i), records.StudentResult) for i in range(4)
    ]
    assert [(r.dataset, r.repeat) for r in results] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    x_0, x_1 = ["t1-0", "t1-1"], ["t1-2", "t1-3"]  # the questions of datasets 0 and 1
    assert trained_on == {0: x_0, 1: x_0, 2: x_1, 3: x_1}
    # R_kj = acc' - acc_base with acc_base = 0.25
    assert [r.reward for r in results] == pytest.approx([0.25, 0.0, 0.5, -0.125])
    assert [r.baseline_accuracy for r in results] == [0.25] * 4


# ----------------------------------------------------------------------- teacher-update stage
def test_teacher_update_groups_rewards_by_dataset_and_promotes_the_median(tmp_path, monkeypatch):
    run = small_run(tmp_path, promotion={"threshold": 0.0, "window": 1})
    rewards = [0.25, 0.0, 0.5, -0.125]  # index 2k + j
    for index, reward in enumerate(rewards):
        result = records.StudentResult(dataset=index // 2, repeat=index % 2, reward=reward)
        layout.save(run.store, layout.student_result(1, index), result)
    promoted, updated = [], []

    def promote(run, t, index, dataset, number):
        promoted.append((t, index, dataset, number))
        return layout.promoted_student(number)

    def update_teacher(run, t, dataset_rewards):
        updated.append(dataset_rewards)
        return {}

    monkeypatch.setattr(students, "promote", promote)
    monkeypatch.setattr(teacher, "update_teacher", update_teacher)
    outer_step.teacher_update(run, 1, None)

    record = run.record(1)
    assert record.student_rewards == [[0.25, 0.0], [0.5, -0.125]]
    assert record.dataset_rewards == pytest.approx([0.125, 0.1875])  # R_k = mean_j R_kj
    assert record.teacher_reward == pytest.approx(0.15625)  # mean_k R_k
    assert updated == [pytest.approx([0.125, 0.1875])]
    # Best dataset 1; the lower middle of its repeats (0.5, -0.125) is repeat 1: index 3.
    assert promoted == [(1, 3, 1, 1)]
    assert (record.promoted, record.promoted_student) == (True, 3)
    assert (record.baseline, record.promotions) == (layout.promoted_student(1), 1)


# -------------------------------------------------------------------------- inner-loop length
@pytest.mark.parametrize(
    ("student", "expected"),
    [
        ({}, [10, 15, 20, 20]),  # the defaults: the paper's 10, 15, 20
        ({"innerSteps": 2, "extraStepsAfterPromotion": 3, "maxInnerSteps": 7}, [2, 5, 7, 7]),
    ],
)
def test_inner_steps_grow_by_promotion_stage_up_to_the_cap(tmp_path, student, expected):
    run = small_run(tmp_path, student=student)
    for t, promotions in enumerate([1, 2, 3], start=1):
        save_record(run, t, promotions)
    assert [students.inner_steps(run, t) for t in (1, 2, 3, 4)] == expected


# ----------------------------------------------------------------------------- baseline cache
def test_baseline_cache_grades_only_new_questions_until_a_promotion(tmp_path, monkeypatch):
    run = small_run(tmp_path)
    loaded, graded = [], []

    def load_checkpoint(store, student, model):
        loaded.append(student)
        return student, None  # the "model" (and so the sampler) is the student's name

    def greedy_correct(sampler, questions, **kw):
        graded.append([q["id"] for q in questions])
        # The base model gets the even questions right; the promoted student gets all of them.
        return [sampler is not None or int(q["id"][1:]) % 2 == 0 for q in questions]

    monkeypatch.setattr(students, "load_checkpoint", load_checkpoint)
    monkeypatch.setattr(students, "greedy_correct", greedy_correct)
    monkeypatch.setattr(students, "answer_checker", contextlib.nullcontext)
    monkeypatch.setattr(students, "make_sampler", lambda training, model, tok, **kw: model)

    first, cached = students.baseline_correct(run, None, HARD_TRAIN[0:4])
    assert (graded, cached) == ([["h0", "h1", "h2", "h3"]], 0)
    assert first == {"h0": True, "h1": False, "h2": True, "h3": False}

    second, cached = students.baseline_correct(run, None, HARD_TRAIN[2:6])
    assert (graded[1:], cached) == ([["h4", "h5"]], 2)
    assert second == {"h2": True, "h3": False, "h4": True, "h5": False}

    promoted = layout.promoted_student(1)  # a new baseline: its own cache, graded afresh
    third, cached = students.baseline_correct(run, promoted, HARD_TRAIN[2:6])
    assert (graded[2:], cached) == ([["h2", "h3", "h4", "h5"]], 0)
    assert third == {"h2": True, "h3": True, "h4": True, "h5": True}
    assert loaded == [None, None, promoted]


# ------------------------------------------------------------------- teacher checkpoints kept
def teacher_run(root: Path, keep_steps: list[int]) -> Run:
    """Step 3's teacher-update inputs on a tiny random Llama: teachers 1 and 2 with their
    optimizer state, step 3's candidates and generation."""
    model, tokenizer = tiny_llama(seed=0)
    model.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    run = small_run(
        root / "store",
        steps=3,
        model={"name": str(root / "base")},
        teacher={"keepCheckpoints": 2, "keepSteps": keep_steps, "warmupSteps": 0},
    )
    for t in (1, 2):
        save_checkpoint(run.store, layout.teacher_checkpoint(t), model, tokenizer)
        run.store.write_bytes(
            layout.teacher_optimizer(t), optimizer_bytes(make_optimizer(model, 1e-5))
        )
    write_jsonl(run.store, layout.candidates(3), CANDIDATES)
    generation = records.Generation(
        attempts=4, accepted=4, acceptance=1.0, vendi=1.0, prompt_ids=[5]
    )
    layout.save(run.store, layout.generation(3), generation)
    return run


@pytest.mark.parametrize(("keep_steps", "first_kept"), [([1], True), ([], False), ([2], False)])
def test_teacher_update_keeps_the_steps_asked_for(tmp_path, keep_steps, first_kept):
    run = teacher_run(tmp_path, keep_steps)
    teacher.update_teacher(run, 3, [0.5, -0.5])
    assert has_checkpoint(run.store, layout.teacher_checkpoint(1)) is first_kept
    assert not run.store.exists(layout.teacher_optimizer(1))  # kept to sample, not to resume
    for t in (2, 3):  # the last keepCheckpoints, with their optimizer state
        assert has_checkpoint(run.store, layout.teacher_checkpoint(t))
        assert run.store.exists(layout.teacher_optimizer(t))
