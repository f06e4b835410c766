"""`soar run` end to end on the tiny model: a whole run, resume after SIGKILL, bad input."""

import json
import os
import signal
from pathlib import Path

import pytest

from soar import layout
from soar.checkpoints import load_checkpoint
from soar.grading import greedy_accuracy
from soar.planner import Stage
from soar.runstate import Run
from soar.sampler import TransformersSampler
from soar.store import FileStore
from tests.support.manifests import TINY, decisions, merge
from tests.support.models import tiny_llama
from tests.support.runs import checkpoint_files, soar, start_run, tiny_manifest, wait_for


@pytest.mark.slow
def test_run_completes_with_every_output(finished_run):
    store = finished_run
    assert json.loads((store / layout.STATE).read_text())["step"] == 2
    record = json.loads((store / layout.step_record(2)).read_text())
    assert len(record["student_rewards"]) == 2 and len(record["student_rewards"][0]) == 2
    # threshold -1 and window 1: every step promotes, PQ gets one dataset per step
    assert record["promotions"] == 2 and record["baseline"] == layout.promoted_student(2)
    assert read_rows(store / layout.PQ) == promoted_questions(store, steps=2, repeats=2)
    assert (store / layout.checkpoint_manifest(layout.teacher_checkpoint(2))).exists()
    # Bounded storage: no step keeps its students' weights once committed.
    kept = [
        (t, i) for t in (1, 2) for i in range(4) if (store / layout.student_model(t, i)).exists()
    ]
    assert kept == []
    evaluations = (store / layout.evaluation(0)).parent.glob("*.json")
    assert sorted(p.relative_to(store).as_posix() for p in evaluations) == [
        layout.evaluation(t) for t in (0, 1, 2)
    ]
    ev = json.loads((store / layout.evaluation(0)).read_text())
    assert set(ev["pass_at_k"]) == {"1", "4"}
    # the hard split really is hard for the base model: fail@k when it was built
    assert ev["pass_at_k"]["1"] < 0.5
    # innerSteps, then + extraStepsAfterPromotion once the baseline has been promoted
    first = json.loads((store / layout.student_result(1, 0)).read_text())
    second = json.loads((store / layout.student_result(2, 0)).read_text())
    assert (first["inner_steps"], second["inner_steps"]) == (2, 3)
    # PS: the promoted student with the best greedy hard-train accuracy (the latest on ties),
    # recomputed here from the checkpoints.
    ps = json.loads((store / layout.PS).read_text())
    promoted = [layout.promoted_student(1), layout.promoted_student(2)]
    accuracies = {student: greedy_train_accuracy(store, student) for student in promoted}
    assert ps["candidates"] == pytest.approx(accuracies)
    best = max(reversed(promoted), key=accuracies.__getitem__)
    assert (ps["student"], ps["accuracy"]) == (best, pytest.approx(accuracies[best]))


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def promoted_questions(store: Path, steps: int, repeats: int) -> list[dict]:
    """PQ as the step records say it should be: each step's promoted dataset's candidates, in
    step order; checks on the way that the promoted student is the lower-median repeat of a
    best dataset."""
    rows = []
    for t in range(1, steps + 1):
        record = json.loads((store / layout.step_record(t)).read_text())
        dataset, repeat = divmod(record["promoted_student"], repeats)
        assert record["dataset_rewards"][dataset] == max(record["dataset_rewards"])
        own = record["student_rewards"][dataset]
        assert own[repeat] == sorted(own)[(repeats - 1) // 2]
        rows += [
            {"step": t, "dataset": dataset, "question": c["question"], "answer": c["answer"]}
            for c in read_rows(store / layout.candidates(t))
            if c["dataset"] == dataset
        ]
    return rows


def greedy_train_accuracy(store: Path, student: str) -> float:
    """A student's greedy accuracy on the hard-train problems that evaluation grades."""
    run = Run.open(FileStore(store))
    model, tokenizer = load_checkpoint(run.store, student, run.spec.model)
    return greedy_accuracy(
        TransformersSampler(model, tokenizer),
        run.hard("train")[: run.spec.evaluation.maxProblems],
        domain=run.domain,
        max_new_tokens=run.spec.student.maxNewTokens,
    )


@pytest.mark.slow
def test_rerun_is_a_no_op(finished_run):
    before = {p: p.stat().st_mtime_ns for p in finished_run.rglob("*") if p.is_file()}
    result = soar("run", str(finished_run.parent / "run.yaml"), cwd=finished_run.parent)
    assert result.returncode == 0, result.stderr
    changed = [
        p
        for p, m in before.items()
        if p.exists() and p.stat().st_mtime_ns != m and "logs" not in p.parts
    ]
    assert changed == []


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_records(finished_run, tmp_path):
    manifest = tiny_manifest(tmp_path)
    store = tmp_path / "e2e"
    kills = 0
    stages = [Stage("student", 1, 0), Stage("teacher-update", 1), Stage("baseline", 2)]
    for done in [layout.done(stage.key) for stage in stages]:
        proc = start_run(manifest, tmp_path)
        wait_for(store / done, proc, 300)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2
    result = soar("run", str(manifest), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert decisions(store, 2) == decisions(finished_run, 2)


def small_run(tmp_path: Path, **spec) -> Path:
    """One step of the tiny run with overrides; returns the store."""
    manifest = tiny_manifest(tmp_path, **merge(TINY, {**spec, "steps": 1}))
    result = soar("run", str(manifest), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / "e2e"


@pytest.mark.slow
def test_lora_teacher_and_students(tmp_path):
    store = small_run(tmp_path, teacher={"lora": {"rank": 4}}, student={"lora": {"rank": 4}})
    assert "adapter_config.json" in checkpoint_files(store, layout.teacher_checkpoint(1))
    assert not (store / layout.student_model(1, 0)).exists()  # deleted once step 1 committed
    # the promoted LoRA student was merged into full weights: the next steps start from it
    promoted = checkpoint_files(store, layout.promoted_student(1))
    assert "model.safetensors" in promoted and "adapter_config.json" not in promoted


@pytest.mark.slow
def test_batched_lora_students_give_the_step_a_one_student_stage_run_gives(tmp_path):
    """4 students (2 datasets x 2 repeats) as 2 stages of 2 LoRA adapters each, against 4
    stages of one: the same rewards and training losses, so the same step record."""
    lora = {"student": {"lora": {"rank": 4}}}
    (tmp_path / "alone").mkdir()
    (tmp_path / "batched").mkdir()
    alone = small_run(tmp_path / "alone", **lora)
    batched = small_run(tmp_path / "batched", **lora, training={"studentsPerStage": 2})
    assert (batched / layout.done("1/student-1")).exists()
    assert not (batched / layout.done("1/student-2")).exists()
    for i in range(4):
        a, b = (json.loads((s / layout.student_result(1, i)).read_text()) for s in (alone, batched))
        assert (b["dataset"], b["repeat"], b["reward"]) == (a["dataset"], a["repeat"], a["reward"])
        losses = [[step[key] for step in r["train"]] for r in (a, b) for key in ("loss", "reward")]
        assert losses[2:] == [pytest.approx(x, rel=1e-4, abs=1e-6) for x in losses[:2]], i
    records = [json.loads((s / layout.step_record(1)).read_text()) for s in (alone, batched)]
    keys = ("student_rewards", "promoted_student", "baseline_accuracy")
    assert [records[1][k] for k in keys] == [records[0][k] for k in keys]


@pytest.mark.slow
def test_learnability_reward(tmp_path):
    store = small_run(tmp_path, reward={"kind": "learnability", "learnabilitySamples": 4})
    record = json.loads((store / layout.step_record(1)).read_text())
    rewards = []
    for k in range(2):  # one probe per dataset
        result = json.loads((store / layout.student_result(1, k)).read_text())
        rates = result["success_rates"]
        assert result["dataset"] == k and len(rates) == 4  # one rate per question of X_k
        expected = sum(0.0 if p == 0 else 1 - p for p in rates) / len(rates)
        assert result["reward"] == pytest.approx(expected)
        rewards.append(result["reward"])
    assert record["dataset_rewards"] == pytest.approx(rewards)
    # the teacher's RLOO over the two datasets: A_k = R_k - R_other
    advantages = [rewards[0] - rewards[1], rewards[1] - rewards[0]]
    assert record["teacher"]["advantages"] == pytest.approx(advantages)


def test_teacher_that_never_follows_the_format_fails_clearly(tmp_path):
    from soar.models import load_model

    _, tokenizer = load_model("tiny-arith")
    model, _ = tiny_llama(tokenizer=tokenizer)  # random: it never writes the teacher's format
    model.save_pretrained(tmp_path / "random")
    tokenizer.save_pretrained(tmp_path / "random")
    (tmp_path / "train.jsonl").write_text('{"question": "1+1", "answer": "2"}\n')
    (tmp_path / "test.jsonl").write_text('{"question": "1+2", "answer": "3"}\n')
    manifest = tiny_manifest(
        tmp_path,
        model={"name": str(tmp_path / "random")},
        data={"domain": "arith", "hardTrain": "train.jsonl", "hardTest": "test.jsonl"},
        teacher=merge(TINY["teacher"], {"maxGenerationRounds": 2}),
    )
    result = soar("run", str(manifest), cwd=tmp_path)
    assert result.returncode != 0
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: stage 1/teacher-generate failed (exit 2): teacher-generate")
    assert "valid teacher outputs after 2 rounds" in first
    # nothing was lost: the completed stages stay completed
    assert (tmp_path / "e2e" / layout.done(Stage("prepare", 0).key)).exists()


def test_build_hard_set_command(tmp_path):
    rows = [{"q": f"{a}+{a}", "a": str(2 * a)} for a in (1, 2, 3)]
    rows += [{"q": "123456+654321", "a": "777777"}, {"q": "999999+111111", "a": "1111110"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = soar(
        "data",
        "build-hard-set",
        "--model",
        "tiny-arith",
        "--input",
        "in.jsonl",
        "--domain",
        "arith",
        "--question-field",
        "q",
        "--answer-field",
        "a",
        "--k",
        "4",
        "--max-new-tokens",
        "64",
        "--train-out",
        "train.jsonl",
        "--test-out",
        "test.jsonl",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    kept = [
        json.loads(line)["question"]
        for name in ("train.jsonl", "test.jsonl")
        for line in (tmp_path / name).read_text().splitlines()
    ]
    assert sorted(kept) == ["123456+654321", "999999+111111"]  # 6 digits: always failed


def test_bad_manifest_fails_before_any_work(tmp_path):
    manifest = tiny_manifest(tmp_path, teacher={"datasets": 1})
    result = soar("run", str(manifest), cwd=tmp_path)
    assert result.returncode == 2
    assert "spec.teacher.datasets: must be >= 2 for RLOO" in result.stderr
    assert not (tmp_path / "e2e").exists()


def test_changed_spec_is_refused_on_resume(tmp_path):
    manifest = tiny_manifest(tmp_path, data={"hardTrain": "a.jsonl", "hardTest": "b.jsonl"})
    (tmp_path / "a.jsonl").write_text('{"question": "1+1", "answer": "2"}\n{"oops\n')
    (tmp_path / "b.jsonl").write_text('{"question": "1+2", "answer": "3"}\n')
    first = soar("run", str(manifest), cwd=tmp_path)
    assert first.returncode == 2
    assert first.stderr.startswith("error: stage prepare failed (exit 2): ")
    assert "a.jsonl:2: invalid JSON" in first.stderr  # names the file and the line
    manifest = tiny_manifest(
        tmp_path, steps=7, data={"hardTrain": "a.jsonl", "hardTest": "b.jsonl"}
    )
    second = soar("run", str(manifest), cwd=tmp_path)
    assert second.returncode == 2
    assert "different spec.steps" in second.stderr
