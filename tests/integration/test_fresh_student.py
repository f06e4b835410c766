"""Fresh-student runs (Hard-Only and evaluate-questions) on the tiny model: train stages continue
one RLOO run exactly, across stage boundaries and a SIGKILL, and the protocol's parts are wired
to what the run stored."""

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from soar import layout, records
from soar.manifest import load_run
from soar.protocol import averaged_pass_at_k, chosen_step
from soar.runstate import init_store
from soar.stages.runner import run_stage
from soar.store import FileStore
from tests.support.manifests import merge, soarrun, write_manifest
from tests.support.runs import soar, start_run, wait_for

pytestmark = pytest.mark.slow

# Six RLOO steps of the tiny model; warmup 2 so the learning rate rises, then decays.
HARD_ONLY = {
    "mode": "hard-only",
    "seed": 3,
    "data": {"domain": "arith", "builtin": "arith", "poolSize": 60, "failK": 8},
    "student": {"batchQuestions": 2, "groupSize": 4, "maxNewTokens": 48, "learningRate": 1e-3},
    "freshStudent": {"maxSteps": 6, "segmentSteps": 6, "warmupSteps": 2, "smoothing": 3},
    "evaluation": {"samples": 4, "ks": [1, 4], "maxProblems": 4},
    "execution": {"parallelism": 2},
}


def staged(folder: Path, spec: dict, name: str = "r") -> FileStore:
    """Run every stage of a run in this process, in the order the planner gives."""
    from soar.planner import plan
    from soar.runstate import completed

    manifest = write_manifest(folder, soarrun(name, spec), name=f"{name}.yaml")
    store = FileStore(folder / name)
    init_store(store, load_run(manifest), folder)
    while stages := plan(load_run(manifest).spec, completed(store)):
        for stage in stages:
            run_stage(store, stage.name, stage.step, stage.index)
    return store


def training_steps(store: FileStore, stages: int) -> list[dict]:
    """Each RLOO step's statistics, timings left out."""
    rows = []
    for t in range(1, stages + 1):
        segment = layout.load(store, layout.fresh_segment(t), records.TrainSegment)
        rows += [{k: v for k, v in s.items() if k != "seconds"} for s in segment.steps]
    return rows


def final_weights(store: FileStore, t: int) -> dict[str, torch.Tensor]:
    manifest = json.loads(store.read_bytes(layout.checkpoint_manifest(layout.fresh_checkpoint(t))))
    folder = store.root / layout.checkpoint_files(layout.fresh_checkpoint(t), manifest["version"])
    return load_file(folder / "model.safetensors")


def assert_same_student(a: FileStore, a_stages: int, b: FileStore, b_stages: int) -> None:
    steps_a, steps_b = training_steps(a, a_stages), training_steps(b, b_stages)
    assert [s["step"] for s in steps_b] == list(range(6))
    for x, y in zip(steps_a, steps_b, strict=True):
        assert x["lr"] == pytest.approx(y["lr"], rel=1e-9)
        assert x["reward"] == y["reward"]
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-4, abs=1e-7)
    wa, wb = final_weights(a, a_stages), final_weights(b, b_stages)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> FileStore:
    """Six RLOO steps in one train stage."""
    return staged(tmp_path_factory.mktemp("one-stage"), HARD_ONLY)


def test_the_learning_rate_follows_one_schedule_over_the_run(uninterrupted):
    # warmup 2 then cosine over the remaining 4 of 6 steps: 1e-3 x (0, 1/2, 1, 0.854, 0.5, 0.146)
    lrs = [s["lr"] for s in training_steps(uninterrupted, 1)]
    expected = [0.0, 0.5e-3, 1e-3, 0.8535534e-3, 0.5e-3, 0.1464466e-3]
    assert lrs == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_stages_train_exactly_as_one_uninterrupted_run(uninterrupted, tmp_path):
    spec = merge(HARD_ONLY, {"freshStudent": {"segmentSteps": 2}})
    three = staged(tmp_path, spec)
    assert_same_student(uninterrupted, 1, three, 3)
    # checkpoint 1 was deleted by train 3 (it keeps the last two); 2 and 3 remain
    assert not three.exists(layout.checkpoint_manifest(layout.fresh_checkpoint(1)))
    assert three.exists(layout.checkpoint_manifest(layout.fresh_checkpoint(2)))


def test_a_run_killed_mid_training_resumes_to_the_same_student(uninterrupted, tmp_path):
    spec = merge(HARD_ONLY, {"freshStudent": {"segmentSteps": 3}})
    store = tmp_path / "killed"
    # Kill the run while train stage 2 (about a second in a warm worker) has begun but not
    # ended: a moment after stage 1 completes, shorter if stage 2 outran it.
    for delay in (0.3, 0.1, 0.0):
        shutil.rmtree(store, ignore_errors=True)
        manifest = write_manifest(tmp_path, soarrun("killed", spec))
        first = start_run(manifest, tmp_path)
        assert wait_for(store / layout.done("1/train"), first, 600)
        time.sleep(delay)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        if not (store / layout.done("2/train")).exists():
            break
    assert not (store / layout.done("2/train")).exists(), "every kill came too late to test"
    result = soar("run", str(manifest), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_student(uninterrupted, 1, FileStore(store), 2)


def test_a_curriculum_trains_on_the_questions_first_then_the_hard_split(tmp_path):
    questions = tmp_path / "pq.jsonl"
    rows = [{"question": f"{a}+{a + 1}", "answer": str(2 * a + 1)} for a in range(10, 16)]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = merge(
        HARD_ONLY,
        {
            "mode": "evaluate-questions",
            "freshStudent": {
                "questions": str(questions),
                "curriculumSteps": 4,
                "segmentSteps": 3,
                "averageSteps": 3,
            },
        },
    )
    store = staged(tmp_path, spec)
    sources = [s["source"] for s in training_steps(store, 2)]
    assert sources == ["questions"] * 4 + ["hard"] * 2
    assert layout.load_rows(store, layout.QUESTIONS) == [
        {"id": f"pq.jsonl:{i + 1}", **row} for i, row in enumerate(rows)
    ]
    # the protocol's result, recomputed from the stored rewards and evaluations
    result = layout.load(store, layout.PROTOCOL_RESULT, records.ProtocolResult)
    rewards = [s["reward"] for s in training_steps(store, 2)]
    # the rule reads the hard split's reward: from the curriculum's switch at step 4 on
    assert result.chosen_step == 4 + chosen_step(rewards[4:], 3, 0.15)
    evaluations = {
        ev.step: ev.pass_at_k
        for ev in (layout.load(store, layout.evaluation(t), records.Evaluation) for t in range(3))
    }
    assert sorted(evaluations) == [0, 3, 6]
    assert (result.evaluated_steps, result.pass_at_k) == averaged_pass_at_k(
        evaluations, result.chosen_step, 3
    )
    assert result.final_pass_at_k == evaluations[6]
