"""What to run next: a pure function of the spec and the set of completed stages.

The local executor and the operator both call `plan` and run exactly the command lines it gives,
so a run continues the same way whichever executor picks it up, after any crash.
"""

from dataclasses import dataclass

from soar.spec import SoarRunSpec


@dataclass(frozen=True)
class Stage:
    """One unit of work: `soar stage <name> --run <uri> --step <t> [--index i]`."""

    name: str
    step: int
    index: int | None = None

    @property
    def key(self) -> str:
        """Where its completion manifest lives, relative to done/."""
        if self.name == "prepare":
            return "prepare"
        suffix = f"-{self.index}" if self.index is not None else ""
        return f"{self.step}/{self.name}{suffix}"

    def argv(self, run_uri: str) -> list[str]:
        args = ["soar", "stage", self.name, "--run", run_uri, "--step", str(self.step)]
        return args + (["--index", str(self.index)] if self.index is not None else [])


def student_count(spec: SoarRunSpec) -> int:
    """Indexed student jobs per step: g*r inner loops, g learnability probes, or 1 hard-only."""
    if spec.mode == "hard-only":
        return 1
    if spec.reward.kind == "learnability":
        return spec.teacher.datasets
    return spec.teacher.datasets * spec.student.repeats


def evaluation_steps(spec: SoarRunSpec) -> list[int]:
    """Step 0 (the base model), every `evaluation.every` steps, and the last step."""
    steps = set(range(0, spec.steps + 1, spec.evaluation.every)) | {spec.steps}
    return sorted(steps)


def committed_step(spec: SoarRunSpec, done: set[str]) -> int:
    """The last step whose teacher-update completed (steps commit in order)."""
    t = 0
    while t < spec.steps and Stage("teacher-update", t + 1).key in done:
        t += 1
    return t


def plan(spec: SoarRunSpec, done: set[str]) -> list[Stage]:
    """Stages that can run now, in order; empty when the run is complete."""
    if "prepare" not in done:
        return [Stage("prepare", 0)]
    committed = committed_step(spec, done)
    ready = [
        Stage("evaluate", t)
        for t in evaluation_steps(spec)
        if t <= committed and Stage("evaluate", t).key not in done
    ]
    if committed == spec.steps:
        return ready
    t = committed + 1
    first = [Stage("baseline", t)] if spec.mode == "hard-only" else []
    if spec.mode == "soar":
        first = [Stage("teacher-generate", t)]
        if spec.reward.kind == "grounded":
            first.append(Stage("baseline", t))
    pending = [s for s in first if s.key not in done]
    if pending:
        return ready + pending
    students = [Stage("student", t, i) for i in range(student_count(spec))]
    pending = [s for s in students if s.key not in done]
    if pending:
        return ready + pending
    return ready + [Stage("teacher-update", t)]


def is_complete(spec: SoarRunSpec, done: set[str]) -> bool:
    return "prepare" in done and not plan(spec, done)
