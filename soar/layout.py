"""Where everything lives in a run store, and how its typed records (soar/records.py) are read
and written.

This is the only module that spells a store key; stages, the report, the operator and the tests
call these functions (docs/design.md, "The run store").

```
run.json                      frozen spec and run uid (written once)
data/hard-{train,test}.jsonl  the hard splits
steps/<t>/                    candidates.jsonl, generation.json, baseline.json,
                              students/<i>/{result.json,model/}, record.json (the step record)
checkpoints/teacher/<t>/      teacher weights (MANIFEST.json + <version>/), + <t>-optimizer.pt
checkpoints/student/<p>/      promoted students
pq.jsonl, pq/<t>.jsonl        promotion questions
eval/<t>.json, ps.json        evaluations, the chosen promoted student
data/questions.jsonl          a fresh student's synthetic questions (mode evaluate-questions)
fresh/<t>.json                a fresh student's train stage t: its RLOO steps' statistics
checkpoints/fresh/<t>/        the fresh student after train stage t, + <t>-state.pt
result.json                   a fresh student's protocol result (chosen step, averaged pass@k)
baseline-cache/, eval/train-accuracy/   per-student caches
done/<stage key>.json         completion manifests, written last by each stage
state.json, logs/             cursor and stage logs
lease/<n>.json                who drives the run (one writer per store)
```
"""

import re
from typing import TypeVar

from soar.records import Record
from soar.store import RecordError, Store, read_json, read_jsonl, write_json

# ------------------------------------------------------------------------------------------ keys
RUN = "run.json"
STATE = "state.json"
DONE = "done"
PQ = "pq.jsonl"
PQ_PARTS = "pq"
PS = "ps.json"
LEASES = "lease"
QUESTIONS = "data/questions.jsonl"
PROTOCOL_RESULT = "result.json"


def hard_split(split: str) -> str:
    """The hard `train` or `test` split, as copied or built by the prepare stage."""
    return f"data/hard-{split}.jsonl"


def _step(t: int) -> str:
    return f"steps/{t}"


def candidates(t: int) -> str:
    """The teacher's accepted pairs of step t, JSONL, with dataset and id."""
    return _step(t) + "/candidates.jsonl"


def generation(t: int) -> str:
    """A Generation record."""
    return _step(t) + "/generation.json"


def baseline(t: int) -> str:
    """A Baseline record."""
    return _step(t) + "/baseline.json"


def student_result(t: int, index: int) -> str:
    """A StudentResult record."""
    return f"{_step(t)}/students/{index}/result.json"


def step_record(t: int) -> str:
    """A StepRecord: the commit of step t."""
    return _step(t) + "/record.json"


def student_model(t: int, index: int) -> str:
    """A checkpoint prefix: the trained student (a LoRA adapter or full weights)."""
    return f"{_step(t)}/students/{index}/model"


def teacher_checkpoint(t: int) -> str:
    """A checkpoint prefix: the teacher after step t."""
    return f"checkpoints/teacher/{t}"


def teacher_optimizer(t: int) -> str:
    """The teacher's AdamW state after step t (torch.save bytes)."""
    return f"checkpoints/teacher/{t}-optimizer.pt"


def promoted_student(number: int) -> str:
    """The number-th promoted student; a step record's `baseline` points at one of these."""
    return f"checkpoints/student/{number}"


def checkpoint_manifest(prefix: str) -> str:
    """Commits a checkpoint: the folder holding its files, with their sizes and SHA-256."""
    return f"{prefix}/MANIFEST.json"


def checkpoint_files(prefix: str, version: str) -> str:
    """One write of a checkpoint; only the folder its manifest names is ever loaded."""
    return f"{prefix}/{version}"


def fresh_segment(t: int) -> str:
    """A TrainSegment record: train stage t of a fresh student."""
    return f"fresh/{t}.json"


def fresh_checkpoint(t: int) -> str:
    """A checkpoint prefix: the fresh student after train stage t."""
    return f"checkpoints/fresh/{t}"


def fresh_training_state(t: int) -> str:
    """Optimizer and learning-rate schedule after train stage t (torch.save bytes)."""
    return f"checkpoints/fresh/{t}-state.pt"


def pq_part(t: int) -> str:
    """The PQ rows step t added; pq.jsonl is their concatenation in step order."""
    return f"{PQ_PARTS}/{t}.jsonl"


def evaluation(t: int) -> str:
    """An Evaluation record."""
    return f"eval/{t}.json"


def baseline_cache(student: str | None) -> str:
    """Greedy correctness per reward question of one baseline student (None: the base model)."""
    return f"baseline-cache/{student or 'base'}.json"


def train_accuracy(student: str | None) -> str:
    """Greedy accuracy of one student on the hard train split (computed once)."""
    return f"eval/train-accuracy/{(student or 'base').replace('/', '-')}.json"


def done(stage_key: str) -> str:
    """The completion manifest of a stage (see planner.Stage.key)."""
    return f"{DONE}/{stage_key}.json"


def lease(generation: int) -> str:
    """One generation of the run's writer lease (see soar.lease)."""
    return f"{LEASES}/{generation}.json"


def stage_log(stage_key: str) -> str:
    """The output of a stage's last run by the local executor."""
    return f"logs/{stage_key}.log"


def pod_log(stage_key: str, pod: str) -> str:
    """The output of one stage pod, archived by the pod itself (soar.pod_log)."""
    return f"logs/{stage_key}/{pod}.log"


# ------------------------------------------------------------------------------ reading, writing
R = TypeVar("R", bound=Record)

# Which stage writes what: a broken record is recomputed by deleting that stage's manifest.
WRITERS = [
    (re.compile(r"steps/(\d+)/(candidates\.jsonl|generation\.json)$"), "{0}/teacher-generate"),
    (re.compile(r"steps/(\d+)/baseline\.json$"), "{0}/baseline"),
    (re.compile(r"steps/(\d+)/students/(\d+)/"), "{0}/student-{1}"),
    (re.compile(r"steps/(\d+)/record\.json$"), "{0}/teacher-update"),
    (re.compile(r"checkpoints/teacher/(\d+)(/|-optimizer)"), "{0}/teacher-update"),
    (re.compile(r"eval/(\d+)\.json$"), "{0}/evaluate"),
    (re.compile(r"(?:fresh|checkpoints/fresh)/(\d+)(\.json|/|-state)"), "{0}/train"),
    (re.compile(r"data/(hard-|questions)"), "prepare"),
]


def written_by(key: str) -> str | None:
    """The key of the stage that writes `key`, if one stage does."""
    for pattern, stage in WRITERS:
        match = pattern.match(key)
        if match:
            return stage.format(*match.groups())
    return None


def how_to_recompute(key: str) -> str:
    stage = written_by(key)
    if stage is not None:
        return f"delete {done(stage)} to run stage {stage} again"
    promoted = re.match(r"checkpoints/student/(\d+)/", key)
    if promoted:
        return (
            f"it is promoted student {promoted.group(1)}, a copy of the student model of the "
            "step whose record promoted it: restore it from there or start a new run"
        )
    return "it cannot be recomputed; restore it or start a new run"


def load(store: Store, key: str, kind: type[R]) -> R:
    """A typed record; RecordError naming the key, and how to recompute it, when it is missing
    or corrupt."""
    try:
        doc = read_json(store, key)
    except KeyError:
        raise RecordError(f"{store.uri}/{key}: missing; {how_to_recompute(key)}") from None
    except RecordError as err:
        raise RecordError(f"{err}; {how_to_recompute(key)}") from None
    try:
        return kind.from_json(doc)
    except (TypeError, AttributeError, ValueError) as err:
        raise RecordError(
            f"{store.uri}/{key}: not a {kind.__name__} ({err}); {how_to_recompute(key)}"
        ) from None


def load_rows(store: Store, key: str) -> list[dict]:
    """The rows of a JSONL file the run needs; RecordError as for `load`."""
    try:
        return read_jsonl(store, key)
    except KeyError:
        raise RecordError(f"{store.uri}/{key}: missing; {how_to_recompute(key)}") from None
    except RecordError as err:
        raise RecordError(f"{err}; {how_to_recompute(key)}") from None


def save(store: Store, key: str, record: Record) -> None:
    write_json(store, key, record.to_json())
