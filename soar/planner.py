"""What to run next: a pure function of the spec and the set of completed stages.

The local executor and the operator both call `plan` and run exactly the command lines it gives,
so a run continues the same way whichever executor picks it up, after any crash.

A run counts in steps: outer (teacher) steps for mode soar; train stages of `segmentSteps` RLOO
steps for a fresh student (modes hard-only and evaluate-questions; docs/design.md, "Fresh-student
runs").
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


def fresh_student(spec: SoarRunSpec) -> bool:
    """Modes that train one fresh student (the paper's evaluation protocol) instead of SOAR."""
    return spec.mode != "soar"


def total_steps(spec: SoarRunSpec) -> int:
    """Steps of the run: T outer steps, or a fresh student's train stages."""
    return spec.freshStudent.segments() if fresh_student(spec) else spec.steps


def student_count(spec: SoarRunSpec) -> int:
    """Indexed student jobs per SOAR step: g*r inner loops, or g learnability probes."""
    if spec.reward.kind == "learnability":
        return spec.teacher.datasets
    return spec.teacher.datasets * spec.student.repeats


def student_groups(spec: SoarRunSpec) -> list[range]:
    """The student indices each `student` stage of a step runs (--index is the group's):
    training.studentsPerStage consecutive students a stage."""
    size, count = spec.training.studentsPerStage, student_count(spec)
    return [range(i, min(i + size, count)) for i in range(0, count, size)]


def evaluation_steps(spec: SoarRunSpec) -> list[int]:
    """Step 0 (the base model), every `evaluation.every` steps, and the last step; a fresh
    student after every train stage."""
    last = total_steps(spec)
    every = 1 if fresh_student(spec) else spec.evaluation.every
    return sorted(set(range(0, last + 1, every)) | {last})


def committed_step(spec: SoarRunSpec, done: set[str]) -> int:
    """The last step whose committing stage completed (steps commit in order): teacher-update,
    or a fresh student's train stage."""
    stage = "train" if fresh_student(spec) else "teacher-update"
    t = 0
    while t < total_steps(spec) and Stage(stage, t + 1).key in done:
        t += 1
    return t


def plan(spec: SoarRunSpec, done: set[str]) -> list[Stage]:
    """Stages that can run now, in order; empty when the run is complete."""
    if "prepare" not in done:
        return [Stage("prepare", 0)]
    if fresh_student(spec):
        return plan_fresh_student(spec, done)
    committed = committed_step(spec, done)
    ready = [
        Stage("evaluate", t)
        for t in evaluation_steps(spec)
        if t <= committed and Stage("evaluate", t).key not in done
    ]
    if committed == spec.steps:
        return ready
    t = committed + 1
    first = [Stage("teacher-generate", t)]
    if spec.reward.kind == "grounded":
        first.append(Stage("baseline", t))
    pending = [s for s in first if s.key not in done]
    if pending:
        return ready + pending
    students = [Stage("student", t, i) for i in range(len(student_groups(spec)))]
    pending = [s for s in students if s.key not in done]
    if pending:
        return ready + pending
    return ready + [Stage("teacher-update", t)]


def plan_fresh_student(spec: SoarRunSpec, done: set[str]) -> list[Stage]:
    """Train stages one after another; each is evaluated as soon as it is trained, beside the
    next one. Train t deletes checkpoint t-2, so it waits for evaluate t-2. The last evaluation
    picks the protocol's result from all the others, so it waits for them."""
    last = total_steps(spec)
    trained = committed_step(spec, done)
    evaluated = {t for t in range(last + 1) if Stage("evaluate", t).key in done}
    ready = [
        Stage("evaluate", t)
        for t in range(trained + 1)
        if t not in evaluated and (t < last or evaluated >= set(range(last)))
    ]
    t = trained + 1
    if t <= last and (t <= 2 or t - 2 in evaluated):
        ready.append(Stage("train", t))
    return ready


def is_complete(spec: SoarRunSpec, done: set[str]) -> bool:
    return "prepare" in done and not plan(spec, done)
