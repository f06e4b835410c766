"""A fresh student: the paper's evaluation protocol as a run (modes hard-only and
evaluate-questions; docs/design.md, "Fresh-student runs").

One student starts from the base model and trains with RLOO for freshStudent.maxSteps steps,
split into train stages of segmentSteps steps. Each stage loads the previous stage's weights,
optimizer and learning-rate schedule, so the stages train exactly as one uninterrupted run (the
KL anchor is the base model throughout). After every stage the student is evaluated on the hard
test split; the last evaluation applies the protocol's checkpoint choice.

    train t      RLOO steps [(t-1) x segmentSteps, t x segmentSteps) on the sources the strategy
                 names for them; saves checkpoint t and its training state, deletes t-2
    evaluate t   pass@k of checkpoint t (t = 0: the base model) on the hard test split; at the
                 last t also the chosen step and pass@k averaged after it (result.json)
"""

import io

import torch
from transformers import get_cosine_schedule_with_warmup

from soar import layout, records
from soar.checkpoints import compute_dtype, load_checkpoint, master_weights, save_checkpoint
from soar.grading import answer_checker, shaped_rewards
from soar.protocol import averaged_pass_at_k, centred_moving_average, chosen_step, phases
from soar.runstate import Run, derive_seed
from soar.student import train_rloo
from soar.teacher import make_optimizer
from soar.trainable import enable_gradient_checkpointing, make_student


def load_student(run: Run, t: int):
    """The fresh student after train stage t, trainable in master weights (t = 0: the base
    model, with a fresh LoRA adapter if students use LoRA)."""
    lora = run.spec.student.lora
    base = master_weights(run.spec.model, lora=lora is not None)
    if t == 0:
        model, tokenizer = load_checkpoint(run.store, None, base)
        return make_student(model, lora.model_dump() if lora else None), tokenizer
    return load_checkpoint(run.store, layout.fresh_checkpoint(t), base, trainable=True)


def training_state(optimizer, schedule) -> bytes:
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}, buffer)
    return buffer.getvalue()


def questions_for(run: Run, source: str) -> list[dict]:
    """The question set of a phase: the synthetic questions, the hard train split, or both."""
    hard = run.hard("train")
    if source == "hard":
        return hard
    synthetic = layout.load_rows(run.store, layout.QUESTIONS)
    return synthetic if source == "questions" else synthetic + hard


def train(run: Run, t: int, index: int | None) -> dict:
    """Train stage t: continue the fresh student for its RLOO steps, then save it."""
    spec, fresh = run.spec, run.spec.freshStudent
    first, last = (t - 1) * fresh.segmentSteps, min(t * fresh.segmentSteps, fresh.maxSteps)
    # 1) the student after stage t-1, its optimizer and schedule (one cosine over maxSteps)
    policy, tokenizer = load_student(run, t - 1)
    if spec.training.gradientCheckpointing:
        enable_gradient_checkpointing(policy)
    optimizer = make_optimizer(policy, spec.student.learningRate)
    schedule = get_cosine_schedule_with_warmup(optimizer, fresh.warmup(), fresh.maxSteps)
    if t > 1:
        state = torch.load(
            io.BytesIO(run.store.read_bytes(layout.fresh_training_state(t - 1))),
            weights_only=True,
        )
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
    # 2) the KL anchor: the base model (LoRA: the adapter disabled)
    ref = None
    if spec.student.klCoef > 0 and spec.student.lora is None:
        ref, _ = load_checkpoint(run.store, None, spec.model)
        ref.eval().requires_grad_(False)
    # 3) the RLOO steps, phase by phase (a curriculum may switch sources inside a stage)
    strategy = fresh.strategy if spec.mode == "evaluate-questions" else None
    steps: list[dict] = []
    with answer_checker() as check:
        for source, a, b in phases(strategy, fresh.curriculumSteps, first, last):
            stats = train_rloo(
                policy,
                tokenizer,
                questions_for(run, source),
                domain=run.domain,
                reward_fn=lambda c, r: shaped_rewards(check, c, r),
                steps=b - a,
                start_step=a,
                optimizer=optimizer,
                schedule=schedule,
                ref=ref,
                batch_questions=spec.student.batchQuestions,
                group_size=spec.student.groupSize,
                max_new_tokens=spec.student.maxNewTokens,
                temperature=spec.student.temperature,
                lr=spec.student.learningRate,
                kl_coef=spec.student.klCoef,
                max_grad_norm=spec.training.maxGradNorm,
                normalisation=spec.training.lossNormalisation,
                micro_batch=spec.training.microBatch,
                compute_dtype=compute_dtype(spec.model),
                seed=derive_seed(spec.seed, "fresh", source),
                sampling=spec.training,
            )
            steps += [{"source": source} | s for s in stats]
    # 4) save: weights, then training state, then the statistics; keep the last two stages
    save_checkpoint(run.store, layout.fresh_checkpoint(t), policy, tokenizer)
    run.store.write_bytes(layout.fresh_training_state(t), training_state(optimizer, schedule))
    segment = records.TrainSegment(first=first, last=last, steps=steps)
    layout.save(run.store, layout.fresh_segment(t), segment)
    if t > 2:
        run.store.delete(layout.fresh_checkpoint(t - 2))
        run.store.delete(layout.fresh_training_state(t - 2))
    rewards = [s["reward"] for s in steps]
    return {"first": first, "last": last, "reward": sum(rewards) / len(rewards)}


def protocol_result(run: Run) -> records.ProtocolResult:
    """The checkpoint choice over the whole run: every train stage's rewards, every evaluation."""
    fresh, last = run.spec.freshStudent, run.spec.freshStudent.segments()
    rewards = [
        s["reward"]
        for t in range(1, last + 1)
        for s in layout.load(run.store, layout.fresh_segment(t), records.TrainSegment).steps
    ]
    evaluations = {}
    for t in range(last + 1):
        evaluation = layout.load(run.store, layout.evaluation(t), records.Evaluation)
        evaluations[evaluation.step] = evaluation.pass_at_k
    # The rule reads the reward on the hard split: a curriculum's first steps train on other
    # questions, whose reward says nothing about it, so its choice starts at the switch.
    start = fresh.curriculumSteps if fresh.questions and fresh.strategy == "curriculum" else 0
    start = min(start, len(rewards) - 1)
    step = start + chosen_step(rewards[start:], fresh.smoothing, fresh.slopeFraction)
    averaged, pass_at_k = averaged_pass_at_k(evaluations, step, fresh.averageSteps)
    return records.ProtocolResult(
        chosen_step=step,
        evaluated_steps=averaged,
        pass_at_k=pass_at_k,
        smoothed_reward=centred_moving_average(rewards[start:], fresh.smoothing),
        final_pass_at_k=evaluations[max(evaluations)],
    )
