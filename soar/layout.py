"""Where everything lives in a run store, and the typed records stored there.

This is the only module that spells a store key; stages, the report, the operator and the tests
call these functions (docs/design.md, "The run store"). Records keep the JSON form they have
always had, so stores written by earlier versions stay readable: fields without a default are
always written (null included), optional fields are left out when they are None unless marked
`keep_null`.

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

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

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


# --------------------------------------------------------------------------------------- records
@dataclass
class Record:
    """A JSON object in the store with typed fields."""

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            omit_null = f.default is None and not f.metadata.get("keep_null")
            if value is not None or not omit_null:
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


@dataclass
class Generation(Record):
    """What teacher-generate did: sampled, accepted, and how diverse the questions are."""

    attempts: int
    accepted: int
    acceptance: float
    vendi: float
    prompt_ids: list[int]  # the tokenised teacher prompt, for the teacher's update


@dataclass
class Baseline(Record):
    """Greedy accuracy of the baseline student on this step's reward questions Q_R."""

    baseline: str | None  # the baseline student's checkpoint; None: the base model
    accuracy: float
    correct: dict[str, bool]  # question id -> greedy answer correct


@dataclass
class StudentResult(Record):
    """One inner loop (or learnability probe) of a step."""

    dataset: int | None  # k; None for hard-only
    repeat: int  # j
    reward: float  # R_kj = acc' - acc_base, or the learnability reward
    inner_steps: int | None = None
    accuracy: float | None = None  # greedy accuracy on Q_R after the inner loop
    baseline_accuracy: float | None = None
    train: list[dict] | None = None  # per RLOO step: loss, reward, kl, ...
    success_rates: list[float] | None = None  # learnability: per question


@dataclass
class StepRecord(Record):
    """The commit of step t: rewards, the promotion decision, the teacher's update."""

    step: int
    baseline: str | None  # the baseline student after this step
    promotions: int
    history: list[float]  # R_hat since the last promotion (the moving average's window)
    student_rewards: list[list[float]]  # [g, r] R_kj
    dataset_rewards: list[float] | None = None  # [g] R_k
    teacher_reward: float | None = None  # R_hat_t
    # Of R_hat over the window; None until the window is full (written as null).
    moving_average: float | None = field(default=None, metadata={"keep_null": True})
    promoted: bool | None = None
    promoted_student: int | None = None  # flat index of the promoted student
    teacher: dict | None = None  # advantages and the teacher step's stats
    generation: dict | None = None  # attempts, acceptance, vendi
    baseline_accuracy: float | None = None

    @classmethod
    def start(cls) -> "StepRecord":
        """Step 0: the base model is the baseline, nothing promoted yet."""
        return cls(step=0, baseline=None, promotions=0, history=[], student_rewards=[])


@dataclass
class State(Record):
    """The cursor: the last committed step."""

    step: int
    promotions: int


@dataclass
class PromotedStudentChoice(Record):
    """PS: the promoted student with the best greedy accuracy on the hard train split."""

    student: str | None
    accuracy: float | None
    candidates: dict[str, float] = field(default_factory=dict)
    # pass@k on the hard test split, averaged over evaluation.psSeeds sampling seeds
    pass_at_k: dict[int, float] | None = None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "PromotedStudentChoice":
        choice = super().from_json(doc)
        if choice.pass_at_k is not None:
            choice.pass_at_k = {int(k): v for k, v in choice.pass_at_k.items()}
        return choice


@dataclass
class Evaluation(Record):
    """pass@k of the baseline after step t on the hard test split."""

    step: int  # the outer step; a fresh student's RLOO steps so far
    baseline: str | None
    problems: int
    pass_at_k: dict[int, float]
    hard_train_accuracy: float | None = None  # SOAR runs only
    ps: dict | None = None  # at the last step: the PromotedStudentChoice

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Evaluation":
        evaluation = super().from_json(doc)
        evaluation.pass_at_k = {int(k): v for k, v in doc["pass_at_k"].items()}
        return evaluation


@dataclass
class TrainSegment(Record):
    """One train stage of a fresh student: RLOO steps [first, last) and their statistics."""

    first: int
    last: int
    steps: list[dict]  # per RLOO step: step, reward, kl, loss, grad_norm, lr, completion_tokens


@dataclass
class ProtocolResult(Record):
    """The paper's checkpoint choice for a fresh student: the chosen RLOO step and pass@k
    averaged over the evaluations from it on (docs/design.md, "Fresh-student runs")."""

    chosen_step: int
    evaluated_steps: list[int]  # the RLOO steps whose evaluations were averaged
    pass_at_k: dict[int, float]
    smoothed_reward: list[float]  # from the step the rule starts at (a curriculum's switch)
    final_pass_at_k: dict[int, float]

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "ProtocolResult":
        result = super().from_json(doc)
        result.pass_at_k = {int(k): v for k, v in doc["pass_at_k"].items()}
        result.final_pass_at_k = {int(k): v for k, v in doc["final_pass_at_k"].items()}
        return result


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
