"""The teacher's side of a step: sampling valid (question, answer) pairs, and its RLOO update
over the datasets' rewards (docs/design.md, "The algorithm", steps 1 and 6)."""

from soar import layout, records
from soar.checkpoints import compute_dtype, load_checkpoint, master_weights, save_checkpoint
from soar.decode import make_sampler
from soar.evaluation import embed_questions, standardised_vendi
from soar.grading import answer_checker
from soar.prompts import parse_teacher_output
from soar.runstate import Run, StageError, derive_seed
from soar.teacher import (
    cosine_lr,
    dataset_advantages,
    load_optimizer_state,
    make_optimizer,
    optimizer_bytes,
    teacher_step,
)
from soar.trainable import enable_gradient_checkpointing, make_student


def load_teacher(run: Run, t: int, trainable: bool = False):
    """The teacher after step t (t = 0: the base model, with fresh LoRA adapters if configured);
    to train, in master weights (see checkpoints.master_weights)."""
    lora = run.spec.teacher.lora
    base = master_weights(run.spec.model, lora=lora is not None) if trainable else run.spec.model
    if t == 0:
        model, tokenizer = load_checkpoint(run.store, None, base)
        return make_student(model, lora.model_dump() if lora else None), tokenizer
    return load_checkpoint(run.store, layout.teacher_checkpoint(t), base, trainable=trainable)


def sample_pairs(
    run: Run, model, tokenizer, needed: int, seed: int, what: str
) -> tuple[list[dict], int]:
    """Sample the teacher until `needed` valid pairs exist: both tag pairs and a boxed answer
    that the verifier parses. Returns the pairs (with their token ids) and the number of samples
    drawn; round i of sampling is seeded by (seed, i). `what` names the samples in errors."""
    spec = run.spec
    sampler = make_sampler(spec.training, model, tokenizer)
    accepted: list[dict] = []
    attempts = 0
    with answer_checker() as check:
        for round_ in range(spec.teacher.maxGenerationRounds):
            missing = needed - len(accepted)
            if missing <= 0:
                break
            samples = sampler.generate(
                [run.domain.teacher_input(tokenizer)],
                n=missing,
                temperature=spec.teacher.temperature,
                max_new_tokens=spec.teacher.maxNewTokens,
                seed=derive_seed(seed, round_),
            )[0]
            attempts += len(samples)
            pairs = [parse_teacher_output(s.text) for s in samples]
            parsed = [(s, p) for s, p in zip(samples, pairs, strict=True) if p is not None]
            ok = check.parses_many([p.answer for _, p in parsed])
            accepted += [
                {
                    "question": pair.question,
                    "answer": pair.answer,
                    "text": sample.text,
                    "token_ids": sample.token_ids,
                }
                for (sample, pair), valid in zip(parsed, ok, strict=True)
                if valid
            ]
    if len(accepted) < needed:
        raise StageError(
            f"{what}: only {len(accepted)} of {needed} valid teacher outputs after "
            f"{spec.teacher.maxGenerationRounds} rounds ({attempts} samples); raise "
            "spec.teacher.maxGenerationRounds or check that the model follows the format"
        )
    return accepted[:needed], attempts


def question_diversity(run: Run, t: int, questions: list[str]) -> float:
    """Vendi score of step t's questions' sentence embeddings, bootstrap-standardised to
    evaluation.vendiQuestions questions so that it compares with other steps' and other
    question sets' (see evaluation.standardised_vendi)."""
    return standardised_vendi(
        embed_questions(questions),
        run.spec.evaluation.vendiQuestions,
        seed=derive_seed(run.spec.seed, "vendi", t),
    )


def update_teacher(run: Run, t: int, rewards: list[float]) -> dict:
    """One RLOO step of the teacher over all accepted rollouts, A_k shared by dataset k's
    rollouts; saves teacher checkpoint t with its optimizer state, keeps the last few and the
    steps of teacher.keepSteps."""
    spec = run.spec.teacher
    policy, tokenizer = load_teacher(run, t - 1, trainable=True)
    if run.spec.training.gradientCheckpointing:
        enable_gradient_checkpointing(policy)
    ref = None
    if spec.klCoef > 0:
        ref, _ = load_checkpoint(run.store, None, run.spec.model)
        ref.eval()
    optimizer = make_optimizer(policy, spec.learningRate)
    if t > 1:
        load_optimizer_state(optimizer, run.store.read_bytes(layout.teacher_optimizer(t - 1)))
    candidates = run.candidates(t)
    advantages = dataset_advantages(rewards)  # [g] A_k
    generation = layout.load(run.store, layout.generation(t), records.Generation)
    stats = teacher_step(
        policy,
        ref,
        generation.prompt_ids,
        [c["token_ids"] for c in candidates],
        [advantages[c["dataset"]] for c in candidates],
        optimizer=optimizer,
        lr=cosine_lr(t, spec.warmupSteps, run.spec.steps, spec.learningRate),
        kl_coef=spec.klCoef,
        max_grad_norm=run.spec.training.maxGradNorm,
        normalisation=run.spec.training.lossNormalisation,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        temperature=spec.temperature,
        micro_batch=run.spec.training.microBatch,
        compute_dtype=compute_dtype(run.spec.model),
    )
    save_checkpoint(run.store, layout.teacher_checkpoint(t), policy, tokenizer)
    run.store.write_bytes(layout.teacher_optimizer(t), optimizer_bytes(optimizer))
    delete_old_teacher(run, t)
    return {"advantages": advantages, **stats}


def delete_old_teacher(run: Run, t: int) -> None:
    """Drop teacher checkpoint t - keepCheckpoints and its optimizer state; a step in keepSteps
    keeps its checkpoint (the paper samples its chosen teacher at step 200) but not its
    optimizer state, twice the weights' size and needed only to resume training from it."""
    spec = run.spec.teacher
    old = t - spec.keepCheckpoints
    if old < 1:
        return
    run.store.delete(layout.teacher_optimizer(old))
    if old not in spec.keepSteps:
        run.store.delete(layout.teacher_checkpoint(old))


def sample_questions(run: Run, t: int, count: int, seed: int) -> list[dict]:
    """`count` (question, answer) pairs from the teacher after step t (t = 0: the base model,
    Base-T), for a fresh student to be evaluated on (the paper samples 128)."""
    model, tokenizer = load_teacher(run, t)
    pairs, _ = sample_pairs(run, model, tokenizer, count, seed, f"sample-questions step {t}")
    return [{"question": p["question"], "answer": p["answer"]} for p in pairs]
