"""The students' side of a step: the baseline's accuracy on Q_R, inner loops that train a copy of
the baseline with RLOO, the learnability probe (Intrinsic-T), and promotion of a student to
baseline (docs/design.md, "The algorithm", steps 3-5)."""

from collections.abc import Sequence
from statistics import fmean

from soar import layout, records
from soar.checkpoints import (
    compute_dtype,
    has_checkpoint,
    load_checkpoint,
    master_weights,
    save_checkpoint,
)
from soar.decode import make_sampler
from soar.grading import (
    answer_checker,
    greedy_correct,
    sampled_correct,
    shaped_rewards,
)
from soar.runstate import Run, derive_seed
from soar.store import read_json, read_jsonl, write_json, write_jsonl
from soar.student import Learner, train_students
from soar.trainable import add_adapters, enable_gradient_checkpointing, make_student

GRADING_BATCH = 64  # prompts per greedy generation batch


def baseline_correct(
    run: Run, student: str | None, questions: list[dict]
) -> tuple[dict[str, bool], int]:
    """Greedy correctness of a baseline student per question id, and how many came from the
    cache: answers are cached in the store until a promotion replaces the baseline, so only
    questions never graded are generated."""
    key = layout.baseline_cache(student)
    cache = read_json(run.store, key) if run.store.exists(key) else {}
    missing = [q for q in questions if q["id"] not in cache]
    if missing:
        model, tokenizer = load_checkpoint(run.store, student, run.spec.model)
        with answer_checker() as check:
            correct = greedy_correct(
                make_sampler(run.spec.training, model, tokenizer, batch_size=GRADING_BATCH),
                missing,
                domain=run.domain,
                max_new_tokens=run.spec.student.maxNewTokens,
                check=check,
            )
        cache.update({q["id"]: ok for q, ok in zip(missing, correct, strict=True)})
        write_json(run.store, key, cache)
    return {q["id"]: cache[q["id"]] for q in questions}, len(questions) - len(missing)


def inner_steps(run: Run, t: int) -> int:
    """innerSteps plus extraStepsAfterPromotion per promotion so far, capped at maxInnerSteps:
    the paper lengthens the inner loop by promotion stage (10, 15, then 20 steps), and the cap
    keeps a long run's inner loops bounded however often it promotes."""
    spec = run.spec.student
    promotions = run.record(t - 1).promotions
    return min(spec.innerSteps + spec.extraStepsAfterPromotion * promotions, spec.maxInnerSteps)


def train_copies(
    run: Run, t: int, indices: Sequence[int], steps: int
) -> tuple[object, object, list[str | None], list[list[dict]]]:
    """Copy the baseline of step t and train students `indices` with RLOO, student i on dataset
    X_k, (k, j) = divmod(i, r) (the answers are the reference, right or wrong). One student is
    the model itself (full fine-tuning or one LoRA adapter); several are LoRA adapters of one
    model, trained together (training.studentsPerStage). Returns (model, tokenizer, each
    student's adapter name or None, each student's per-step stats)."""
    spec = run.spec.student
    lora = spec.lora.model_dump() if spec.lora else None
    base = master_weights(run.spec.model, lora=lora is not None)
    model, tokenizer = load_checkpoint(run.store, run.record(t - 1).baseline, base)
    model = make_student(model, lora)
    adapters = add_adapters(model, len(indices)) if len(indices) > 1 else [None]
    if run.spec.training.gradientCheckpointing:
        enable_gradient_checkpointing(model)
    learners = [
        Learner(
            run.candidates(t, dataset=i // spec.repeats),
            derive_seed(run.spec.seed, "student", t, i),
            adapter,
        )
        for i, adapter in zip(indices, adapters, strict=True)
    ]
    with answer_checker() as check:
        stats = train_students(
            model,
            tokenizer,
            learners,
            domain=run.domain,
            reward_fn=lambda c, r: shaped_rewards(check, c, r),
            steps=steps,
            batch_questions=spec.batchQuestions,
            group_size=spec.groupSize,
            max_new_tokens=spec.maxNewTokens,
            temperature=spec.temperature,
            lr=spec.learningRate,
            warmup_steps=spec.warmupSteps,
            kl_coef=spec.klCoef,
            max_grad_norm=run.spec.training.maxGradNorm,
            normalisation=run.spec.training.lossNormalisation,
            micro_batch=run.spec.training.microBatch,
            compute_dtype=compute_dtype(run.spec.model),
            sampling=run.spec.training,
        )
    return model, tokenizer, adapters, stats


def accuracies_on(
    run: Run, model, tokenizer, questions: list[dict], adapters: list[str | None]
) -> list[float]:
    """Greedy accuracy on `questions` of each trained student (its adapter; None: the model as
    it is), all graded in one batched generation."""
    sampler = make_sampler(run.spec.training, model, tokenizer, batch_size=GRADING_BATCH)
    per_question = None if adapters == [None] else [a for a in adapters for _ in questions]
    with answer_checker() as check:
        correct = greedy_correct(
            sampler,
            questions * len(adapters),
            domain=run.domain,
            max_new_tokens=run.spec.student.maxNewTokens,
            check=check,
            adapters=per_question,
        )
    n = len(questions)
    return [fmean(correct[k * n : (k + 1) * n]) for k in range(len(adapters))]


def accuracy_on(run: Run, model, tokenizer, questions: list[dict]) -> float:
    """Greedy accuracy of a trained student."""
    return accuracies_on(run, model, tokenizer, questions, [None])[0]


def learnability_probe(run: Run, t: int, index: int) -> records.StudentResult:
    """Intrinsic-T's reward for dataset `index`: per question, p = success rate of the baseline's
    samples; reward 0 if p = 0 else 1 - p; the dataset's reward is the mean."""
    spec = run.spec
    model, tokenizer = load_checkpoint(run.store, run.record(t - 1).baseline, spec.model)
    with answer_checker() as check:
        correct = sampled_correct(  # [n_questions, samples]
            make_sampler(spec.training, model, tokenizer),
            run.candidates(t, dataset=index),
            domain=run.domain,
            n=spec.reward.learnabilitySamples,
            temperature=spec.student.temperature,
            max_new_tokens=spec.student.maxNewTokens,
            seed=derive_seed(spec.seed, "learnability", t, index),
            check=check,
        )
    rates = [fmean(row) for row in correct]
    reward = fmean(0.0 if p == 0 else 1.0 - p for p in rates)
    return records.StudentResult(dataset=index, repeat=0, reward=reward, success_rates=rates)


def save_student(run: Run, t: int, index: int, model, tokenizer, adapter: str | None) -> None:
    """A LoRA student is saved as its adapter over the baseline it was copied from."""
    base = run.record(t - 1).baseline
    key = layout.student_model(t, index)
    save_checkpoint(run.store, key, model, tokenizer, base, adapter or "default")


def promote(run: Run, t: int, index: int, dataset: int, number: int) -> str:
    """Student `index` of step t becomes promoted student `number` (merged if LoRA) and its
    dataset joins PQ. Returns the new baseline's checkpoint."""
    target = layout.promoted_student(number)
    if not has_checkpoint(run.store, target):
        model, tokenizer = load_checkpoint(
            run.store, layout.student_model(t, index), run.spec.model
        )
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        save_checkpoint(run.store, target, model, tokenizer)
    rows = [
        {"step": t, "dataset": dataset, "question": c["question"], "answer": c["answer"]}
        for c in run.candidates(t, dataset=dataset)
    ]
    write_jsonl(run.store, layout.pq_part(t), rows)
    parts = sorted(
        run.store.list(layout.PQ_PARTS), key=lambda k: int(k.split("/")[-1].split(".")[0])
    )
    write_jsonl(run.store, layout.PQ, [row for k in parts for row in read_jsonl(run.store, k)])
    return target
