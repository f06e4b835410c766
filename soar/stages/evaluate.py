"""The evaluate stage: pass@k of the baseline on the hard test split, its greedy accuracy on the
hard train split, and at the last step PS, the best promoted student (docs/design.md, step 7)."""

from soar import layout
from soar.checkpoints import load_checkpoint
from soar.evaluation import mean_pass_at_k
from soar.grading import answer_checker, sampled_correct
from soar.runstate import Run, derive_seed
from soar.sampler import TransformersSampler
from soar.stages.students import accuracy_on
from soar.store import read_json, write_json


def evaluate(run: Run, t: int, index: int | None) -> dict:
    """pass@k (unbiased, from evaluation.samples samples per problem) after step t."""
    spec = run.spec
    student = run.record(t).baseline
    problems = run.hard("test")[: spec.evaluation.maxProblems]
    model, tokenizer = load_checkpoint(run.store, student, spec.model)
    with answer_checker() as check:
        correct = sampled_correct(  # [problems, samples]
            TransformersSampler(model, tokenizer),
            problems,
            domain=run.domain,
            n=spec.evaluation.samples,
            temperature=spec.student.temperature,
            max_new_tokens=spec.student.maxNewTokens,
            seed=derive_seed(spec.seed, "evaluate", t),
            check=check,
        )
    result = layout.Evaluation(
        step=t,
        baseline=student,
        problems=len(problems),
        pass_at_k=mean_pass_at_k(
            [sum(row) for row in correct], spec.evaluation.samples, spec.evaluation.ks
        ),
        hard_train_accuracy=train_accuracy(run, student),
    )
    if t == spec.steps:
        result.ps = select_ps(run, t).to_json()
    layout.save(run.store, layout.evaluation(t), result)
    return {"pass_at_k": result.pass_at_k, "hard_train_accuracy": result.hard_train_accuracy}


def train_accuracy(run: Run, student: str | None) -> float:
    """Greedy accuracy of a student on the hard train split (its first evaluation.maxProblems),
    computed once per student."""
    key = layout.train_accuracy(student)
    if run.store.exists(key):
        return read_json(run.store, key)["accuracy"]
    model, tokenizer = load_checkpoint(run.store, student, run.spec.model)
    problems = run.hard("train")[: run.spec.evaluation.maxProblems]
    accuracy = accuracy_on(run, model, tokenizer, problems)
    write_json(run.store, key, {"student": student, "accuracy": accuracy})
    return accuracy


def select_ps(run: Run, t: int) -> layout.PromotedStudentChoice:
    """PS: the promoted student with the best greedy hard-train accuracy (the latest on ties)."""
    promoted = [layout.promoted_student(p) for p in range(1, run.record(t).promotions + 1)]
    accuracies = {student: train_accuracy(run, student) for student in promoted}
    best = max(reversed(promoted), key=accuracies.__getitem__, default=None)
    ps = layout.PromotedStudentChoice(best, accuracies.get(best), accuracies)
    layout.save(run.store, layout.PS, ps)
    return ps
