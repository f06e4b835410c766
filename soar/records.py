"""The typed records of a run store (where each lives: soar/layout.py).

Records keep the JSON form they have always had, so stores written by earlier versions stay
readable: fields without a default are always written (null included), optional fields are left
out when they are None unless marked `keep_null`.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Self


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
