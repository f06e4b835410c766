"""Reward questions Q_R: |Q_R| distinct hard-train problems, fresh each step, and a function of
(seed, t) alone: the same in every stage's process and in a second store holding the same data."""

from pathlib import Path

from soar import layout
from soar.runstate import Run
from soar.store import FileStore, write_jsonl
from tests.support.manifests import MINIMAL, parsed

TRAIN = [{"id": f"train-{i}", "question": f"{i}+{i}", "answer": str(2 * i)} for i in range(20)]
TEST = [{"id": f"test-{i}", "question": f"{i}+1", "answer": str(i + 1)} for i in range(20)]


def run_with_hard_splits(root: Path, questions: int = 5, seed: int = 0) -> Run:
    """A run in a file:// store at `root` whose prepare stage left TRAIN and TEST."""
    spec = parsed(base=MINIMAL, seed=seed, reward={"questions": questions}).spec
    store = FileStore(root)
    write_jsonl(store, layout.hard_split("train"), TRAIN)
    write_jsonl(store, layout.hard_split("test"), TEST)
    return Run(store, spec, uid=str(root))


def ids(rows: list[dict]) -> list[str]:
    return [row["id"] for row in rows]


def test_the_right_count_of_distinct_hard_train_questions(tmp_path):
    drawn = run_with_hard_splits(tmp_path).reward_questions(1)
    assert len(drawn) == 5 and len(set(ids(drawn))) == 5
    assert all(row in TRAIN for row in drawn)  # never the test split


def test_all_of_a_small_hard_train_split(tmp_path):
    drawn = run_with_hard_splits(tmp_path, questions=64).reward_questions(1)
    assert sorted(ids(drawn)) == sorted(ids(TRAIN))


def test_fresh_each_step(tmp_path):
    run = run_with_hard_splits(tmp_path)
    draws = [frozenset(ids(run.reward_questions(t))) for t in range(1, 6)]
    assert len(set(draws)) == 5


def test_a_function_of_seed_and_step_only(tmp_path):
    first = run_with_hard_splits(tmp_path / "a", seed=7)
    # Another store and run uid with the same seed and data: what a resumed or re-run stage sees.
    second = run_with_hard_splits(tmp_path / "b", seed=7)
    other_seed = run_with_hard_splits(tmp_path / "c", seed=8)
    for t in (1, 2, 3):
        assert ids(first.reward_questions(t)) == ids(second.reward_questions(t))
    assert [ids(first.reward_questions(t)) for t in (1, 2, 3)] != [
        ids(other_seed.reward_questions(t)) for t in (1, 2, 3)
    ]
