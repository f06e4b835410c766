"""The evaluate stage: pass@k on the hard test split after step t.

SOAR runs evaluate the baseline student (and its greedy accuracy on the hard train split); at the
last step they choose PS, the best promoted student, and evaluate it with evaluation.psSeeds
sampling seeds (docs/design.md, "The algorithm", evaluation). Fresh-student runs evaluate the
student after train stage t and, at the last one, apply the protocol's checkpoint choice
(docs/design.md, "Fresh-student runs").
"""

from statistics import fmean

from soar import layout, records
from soar.checkpoints import load_checkpoint
from soar.decode import make_sampler
from soar.evaluation import mean_pass_at_k
from soar.grading import answer_checker, sampled_correct
from soar.planner import fresh_student, total_steps
from soar.runstate import Run, derive_seed
from soar.stages.fresh import protocol_result
from soar.stages.students import accuracy_on
from soar.store import read_json, write_json


def evaluate(run: Run, t: int, index: int | None) -> dict:
    """pass@k (unbiased, from evaluation.samples samples per problem) after step t."""
    spec = run.spec
    last = t == total_steps(spec)
    if fresh_student(spec):
        student = layout.fresh_checkpoint(t) if t > 0 else None
        step = min(t * spec.freshStudent.segmentSteps, spec.freshStudent.maxSteps)
    else:
        student, step = run.record(t).baseline, t
    result = records.Evaluation(
        step=step,
        baseline=student,
        problems=len(hard_test_problems(run)),
        pass_at_k=hard_test_pass_at_k(run, student, derive_seed(spec.seed, "evaluate", t)),
    )
    if not fresh_student(spec):
        result.hard_train_accuracy = train_accuracy(run, student)
        if last:
            result.ps = select_ps(run, t).to_json()
    layout.save(run.store, layout.evaluation(t), result)
    summary = {"pass_at_k": result.pass_at_k}
    if fresh_student(spec) and last:  # every other evaluation is in the store by now
        protocol = protocol_result(run)
        layout.save(run.store, layout.PROTOCOL_RESULT, protocol)
        summary |= {"chosen_step": protocol.chosen_step, "protocol_pass_at_k": protocol.pass_at_k}
    return summary


def hard_test_problems(run: Run) -> list[dict]:
    return run.hard("test")[: run.spec.evaluation.maxProblems]


def hard_test_pass_at_k(run: Run, student: str | None, seed: int) -> dict[int, float]:
    """Mean pass@k of a student over the hard test problems, from one seeded set of samples."""
    spec = run.spec
    model, tokenizer = load_checkpoint(run.store, student, spec.model)
    with answer_checker() as check:
        correct = sampled_correct(  # [problems, samples]
            make_sampler(spec.training, model, tokenizer),
            hard_test_problems(run),
            domain=run.domain,
            n=spec.evaluation.samples,
            temperature=spec.student.temperature,
            max_new_tokens=spec.student.maxNewTokens,
            seed=seed,
            check=check,
        )
    counts = [sum(row) for row in correct]
    return mean_pass_at_k(counts, spec.evaluation.samples, spec.evaluation.ks)


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


def select_ps(run: Run, t: int) -> records.PromotedStudentChoice:
    """PS: the promoted student with the best greedy hard-train accuracy (the latest on ties),
    and its pass@k on the hard test split averaged over evaluation.psSeeds sampling seeds."""
    promoted = [layout.promoted_student(p) for p in range(1, run.record(t).promotions + 1)]
    accuracies = {student: train_accuracy(run, student) for student in promoted}
    best = max(reversed(promoted), key=accuracies.__getitem__, default=None)
    ps = records.PromotedStudentChoice(best, accuracies.get(best), accuracies)
    if best is not None:
        seeds = range(run.spec.evaluation.psSeeds)
        runs = [hard_test_pass_at_k(run, best, derive_seed(run.spec.seed, "ps", s)) for s in seeds]
        ps.pass_at_k = {k: fmean(r[k] for r in runs) for k in runs[0]}
    layout.save(run.store, layout.PS, ps)
    return ps
