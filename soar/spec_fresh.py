"""The fresh-student section of a SoarRun (spec.freshStudent): the paper's evaluation protocol as
a run (docs/design.md, "Fresh-student runs")."""

from typing import Literal

from pydantic import Field

from soar.spec_base import Model


class FreshStudent(Model):
    """The paper's evaluation protocol: one student trained from the base model with RLOO for up
    to maxSteps steps (spec.student's settings), evaluated on the hard test split as it trains."""

    questions: str | None = Field(
        None,
        description="JSONL of synthetic (question, answer) pairs trained on beside the hard "
        "train split: PQ, or questions sampled from a teacher (`soar sample-questions`). Mode "
        "evaluate-questions only.",
    )
    strategy: Literal["curriculum", "mixed"] = Field(
        "curriculum",
        description="curriculum: the synthetic questions only for curriculumSteps, then the hard "
        "train split only (the paper's MATH runs); mixed: both, sampled together throughout.",
    )
    curriculumSteps: int = Field(64, ge=0, description="Synthetic-only steps of a curriculum.")
    maxSteps: int = Field(1500, ge=1, le=1_000_000, description="RLOO steps of the run.")
    warmupSteps: int | None = Field(
        None,
        ge=0,
        description="Linear warmup of the one cosine schedule; default 0 for a curriculum, else "
        "20 (the paper's).",
    )
    segmentSteps: int = Field(
        50,
        ge=1,
        description="RLOO steps per train stage; the student is evaluated (pass@k on the hard "
        "test split) after each. Optimizer and schedule carry over between stages.",
    )
    smoothing: int = Field(
        25, ge=1, description="Centred moving-average window over the mean training reward."
    )
    slopeFraction: float = Field(
        0.15,
        gt=0,
        lt=1,
        description="The chosen step is the earliest after the steepest one whose smoothed, "
        "range-normalised slope falls below this fraction of the steepest slope.",
    )
    averageSteps: int = Field(
        200,
        ge=1,
        description="pass@k is averaged over the evaluations in this many steps "
        "from the chosen step on.",
    )

    def warmup(self) -> int:
        if self.warmupSteps is not None:
            return self.warmupSteps
        return 0 if self.questions and self.strategy == "curriculum" else 20

    def segments(self) -> int:
        """Train stages in the run."""
        return -(-self.maxSteps // self.segmentSteps)
