"""`soar experiment` on the tiny model, one seed: every piece runs, the table holds what the runs
stored, every method sees the same hard split, and a second invocation resumes without work."""

import json
from pathlib import Path

import pytest
import yaml

from soar import layout, records
from soar.store import FileStore
from tests.support.manifests import TINY, merge, soarrun, write_manifest
from tests.support.runs import soar

pytestmark = pytest.mark.slow

BASE = merge(
    TINY,
    {
        "steps": 1,
        "student": {"repeats": 1},
        "reward": {"learnabilitySamples": 4},
        "evaluation": {"maxProblems": 4, "psSeeds": 2},
    },
)
FRESH = {"maxSteps": 4, "segmentSteps": 2, "curriculumSteps": 2, "smoothing": 3, "averageSteps": 2}
PIECES = ["soar", "intrinsic", "hard-only", "pq", "grounded-t", "intrinsic-t", "base-t"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("experiment")
    write_manifest(folder, soarrun("base", BASE), name="base.yaml")
    config = {"base": "base.yaml", "seeds": [5], "sampleQuestions": 6, "freshStudent": FRESH}
    (folder / "exp.yaml").write_text(yaml.safe_dump(config))
    result = soar("experiment", "exp.yaml", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "experiment"


def store(output: Path, piece: str) -> FileStore:
    return FileStore(output / "runs" / f"{piece}-s5")


def test_every_piece_ran_to_completion(experiment):
    for piece in PIECES:
        assert (experiment / "manifests" / f"{piece}-s5.yaml").exists()
        assert store(experiment, piece).exists(layout.done("prepare")), piece
    # the teachers' question sets hold what was asked for, PQ the promoted dataset (4 pairs)
    for name, count in [("grounded-t", 6), ("intrinsic-t", 6), ("base-t", 6), ("pq", 4)]:
        lines = (experiment / "questions" / f"{name}-s5.jsonl").read_text().splitlines()
        assert len(lines) == count, name


def test_the_table_holds_what_the_runs_stored(experiment):
    doc = json.loads((experiment / "results.json").read_text())
    for method in ["hard-only", "pq", "grounded-t", "intrinsic-t", "base-t"]:
        result = layout.load(
            store(experiment, method), layout.PROTOCOL_RESULT, records.ProtocolResult
        )
        expected = {str(k): v for k, v in result.pass_at_k.items()}
        assert doc["pass_at_k"][method] == {"5": expected}, method
        assert doc["table"][method]["1"] == {"mean": result.pass_at_k[1], "sd": None, "n": 1}
    ps = layout.load(store(experiment, "soar"), layout.PS, records.PromotedStudentChoice)
    assert doc["pass_at_k"]["ps"] == {"5": {str(k): v for k, v in ps.pass_at_k.items()}}
    assert doc["promotions"] == {"5": 1}
    markdown = (experiment / "results.md").read_text()
    assert f"| Hard-Only | 1 | {100 * doc['table']['hard-only']['1']['mean']:.1f} |" in markdown
    for plot in ["pass-at-k.png", "teacher-rewards.png", "training-rewards.png"]:
        assert (experiment / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_method_is_evaluated_on_the_same_hard_split(experiment):
    first = store(experiment, "soar")
    for split in ["train", "test"]:
        rows = layout.load_rows(first, layout.hard_split(split))
        for piece in PIECES[1:]:
            other = layout.load_rows(store(experiment, piece), layout.hard_split(split))
            assert [(r["question"], r["answer"]) for r in other] == [
                (r["question"], r["answer"]) for r in rows
            ], piece


def test_a_second_invocation_resumes_without_work(experiment):
    before = {p: p.stat().st_mtime_ns for p in (experiment / "runs").rglob("done/**/*.json")}
    result = soar("experiment", "exp.yaml", cwd=experiment.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    after = {p: p.stat().st_mtime_ns for p in (experiment / "runs").rglob("done/**/*.json")}
    assert after == before
