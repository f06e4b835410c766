"""One outer step t of SOAR, top to bottom, as the stages that run it (paper Algorithm 1;
docs/design.md, "The algorithm"). Each function is one `soar stage`: it reads what earlier stages
left in the run store and writes its own outputs; the runner writes its completion manifest.

    teacher-generate   1) the teacher writes g datasets X_1..X_g of n (question, answer) pairs
    baseline           2) reward questions Q_R, fresh each step
                       3) greedy accuracy of the baseline student on Q_R
    student (group)    4) a copy of the baseline trained on X_k with RLOO; R_kj = acc' - acc_base
                          (studentsPerStage students (k, j) a stage, batched as LoRA adapters)
    teacher-update     5) teacher reward R_k = mean_j R_kj, R_hat = mean_k R_k
                       6) promotion: if the moving average of R_hat > tau, the best dataset's
                          median student becomes the baseline and X_k joins PQ
                       7) teacher update: RLOO over the g datasets, A_k = R_k - mean_{k' != k} R_k'
                       8) commit: the step record, then the cursor; the step's student
                          weights are deleted (a promoted student was copied in step 6)

Intrinsic-T (reward.kind learnability) replaces 3-4 by a learnability probe per dataset and never
promotes. Evaluation (pass@k on the hard test split) runs beside the steps (`evaluate`). Hard-Only
is not a SOAR run: it is a fresh student (soar/stages/fresh.py).
"""

from statistics import fmean

from soar import layout, records
from soar.planner import student_count, student_groups
from soar.promotion import dataset_rewards, decide_promotion
from soar.prompts import encode_prompts
from soar.runstate import Run, StageError, derive_seed
from soar.stages import students, teacher
from soar.store import write_jsonl


def teacher_generate(run: Run, t: int, index: int | None) -> dict:
    """1) Sample the teacher of step t-1 until g*n valid pairs exist; split into g datasets."""
    g, n = run.spec.teacher.datasets, run.spec.teacher.questionsPerDataset
    model, tokenizer = teacher.load_teacher(run, t - 1)
    seed = derive_seed(run.spec.seed, "teacher-generate", t)
    what = f"teacher-generate step {t}"
    pairs, attempts = teacher.sample_pairs(run, model, tokenizer, g * n, seed, what)
    for i, pair in enumerate(pairs):
        pair["dataset"] = i // n  # X_k = pairs[k*n : (k+1)*n]
        pair["id"] = f"t{t}-{i}"
    write_jsonl(run.store, layout.candidates(t), pairs)
    generation = records.Generation(
        attempts=attempts,
        accepted=len(pairs),
        acceptance=len(pairs) / attempts,
        vendi=teacher.question_diversity(run, t, [pair["question"] for pair in pairs]),
        prompt_ids=encode_prompts(tokenizer, [run.domain.teacher_input(tokenizer)])[0],
    )
    layout.save(run.store, layout.generation(t), generation)
    return {k: v for k, v in generation.to_json().items() if k != "prompt_ids"}


def baseline(run: Run, t: int, index: int | None) -> dict:
    """2) Draw Q_R; 3) the baseline's greedy accuracy on it (cached until a promotion)."""
    student = run.record(t - 1).baseline
    questions = run.reward_questions(t)  # deterministic from (seed, t)
    correct, cached = students.baseline_correct(run, student, questions)
    result = records.Baseline(baseline=student, accuracy=fmean(correct.values()), correct=correct)
    layout.save(run.store, layout.baseline(t), result)
    return {"accuracy": result.accuracy, "cached": cached}


def student(run: Run, t: int, index: int | None) -> dict:
    """4) The inner loops of student group `index` (training.studentsPerStage students i, each
    (k, j) = divmod(i, r)): train a copy of the baseline on X_k, then R_kj = greedy accuracy on
    Q_R after training minus the baseline's."""
    spec = run.spec
    groups = student_groups(spec)
    if index is None or not 0 <= index < len(groups):
        raise StageError(f"student step {t}: --index must be in [0, {len(groups)})")
    if spec.reward.kind == "learnability":
        rewards = []
        for i in groups[index]:
            result = students.learnability_probe(run, t, i)
            layout.save(run.store, layout.student_result(t, i), result)
            rewards.append(result.reward)
        return {"rewards": rewards}
    steps = students.inner_steps(run, t)
    model, tokenizer, adapters, stats = students.train_copies(run, t, groups[index], steps)
    accuracies = students.accuracies_on(run, model, tokenizer, run.reward_questions(t), adapters)
    base = layout.load(run.store, layout.baseline(t), records.Baseline).accuracy
    for i, adapter, accuracy, history in zip(
        groups[index], adapters, accuracies, stats, strict=True
    ):
        students.save_student(run, t, i, model, tokenizer, adapter)
        dataset, repeat = divmod(i, spec.student.repeats)
        result = records.StudentResult(
            dataset=dataset,
            repeat=repeat,
            reward=accuracy - base,  # R_kj
            inner_steps=steps,
            accuracy=accuracy,
            baseline_accuracy=base,
            train=[{k: v for k, v in s.items() if k != "seconds"} for s in history],
        )
        layout.save(run.store, layout.student_result(t, i), result)
    seconds = sum(s["seconds"] for s in stats[-1])  # a step's time, once all students took it
    return {
        "rewards": [a - base for a in accuracies],
        "accuracies": accuracies,
        "train_seconds": seconds,
    }


def promote(run: Run, record: records.StepRecord, t: int, index: int, dataset: int):
    """Student `index` of step t becomes the baseline; its dataset joins PQ."""
    record.promotions += 1
    record.baseline = students.promote(run, t, index, dataset, record.promotions)
    record.promoted_student = index


def teacher_update(run: Run, t: int, index: int | None) -> dict:
    """5) teacher reward, 6) promotion, 7) the teacher's RLOO step, 8) commit."""
    spec = run.spec
    previous = run.record(t - 1)
    results = [
        layout.load(run.store, layout.student_result(t, i), records.StudentResult)
        for i in range(student_count(spec))
    ]
    record = records.StepRecord(
        step=t,
        baseline=previous.baseline,
        promotions=previous.promotions,
        history=[],
        student_rewards=[],
    )
    # 5) Teacher reward: R_k = mean_j R_kj, R_hat_t = mean_k R_k.
    r = 1 if spec.reward.kind == "learnability" else spec.student.repeats
    grid = [[res.reward for res in results[k * r : (k + 1) * r]] for k in range(len(results) // r)]
    record.student_rewards = grid  # [g, r]
    record.dataset_rewards = dataset_rewards(grid)  # [g]
    record.teacher_reward = fmean(record.dataset_rewards)
    record.promoted = False
    # 6) Promotion (grounded reward only), checked before the teacher update.
    if spec.reward.kind == "grounded":
        decision = decide_promotion(
            previous.history, grid, spec.promotion.threshold, spec.promotion.window
        )
        record.moving_average, record.history = decision.moving_average, decision.history
        record.promoted = decision.promoted
        if decision.promoted:
            promote(run, record, t, decision.student, decision.dataset)
    # 7) Teacher update over the datasets' rewards.
    record.teacher = teacher.update_teacher(run, t, record.dataset_rewards)
    # 8) Commit: the step record (with what generation and the baseline measured), then the
    # cursor. The runner's completion manifest, written after this, is the commit point.
    if run.store.exists(layout.generation(t)):
        gen = layout.load(run.store, layout.generation(t), records.Generation)
        record.generation = {
            "attempts": gen.attempts,
            "acceptance": gen.acceptance,
            "vendi": gen.vendi,
        }
    if run.store.exists(layout.baseline(t)):  # the learnability reward needs no baseline
        record.baseline_accuracy = layout.load(
            run.store, layout.baseline(t), records.Baseline
        ).accuracy
    layout.save(run.store, layout.step_record(t), record)
    layout.save(run.store, layout.STATE, records.State(step=t, promotions=record.promotions))
    # The step's trained students are not needed any more: the promoted one was copied.
    for i in range(student_count(spec)):
        run.store.delete(layout.student_model(t, i))
    return {
        "teacher_reward": record.teacher_reward,
        "moving_average": record.moving_average,
        "promoted": record.promoted,
    }
