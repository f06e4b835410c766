"""Stage entrypoints: `soar stage <name> --run <uri> --step <t> [--index i]`.

Each stage reads its inputs from the run store, writes its outputs, and writes its completion
manifest last. A completed stage is a no-op when run again; a crashed one left no manifest and is
simply run again, producing the same outputs (every random choice is seeded from the run seed).
"""

import hashlib
import json
import random
import time
from dataclasses import dataclass
from statistics import fmean

from soar.planner import Stage, done_key, student_count
from soar.promotion import decide
from soar.spec import SoarRunSpec
from soar.store import Store, read_json, read_jsonl, write_json, write_jsonl


class StageError(RuntimeError):
    """A stage cannot complete; the message says which stage and why, in one line."""


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 31-bit seed for one random choice of the run, independent of Python's hash salt."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") >> 1


@dataclass
class Run:
    """A run's store and frozen spec, as every stage sees them."""

    store: Store
    spec: SoarRunSpec
    uid: str

    @classmethod
    def open(cls, store: Store) -> "Run":
        try:
            frozen = read_json(store, "run.json")
        except KeyError:
            raise StageError(f"{store.uri}: no run.json; start the run with `soar run`") from None
        return cls(store, SoarRunSpec.model_validate(frozen["spec"]), frozen["uid"])

    @property
    def domain(self):
        if self.spec.data.domain == "arith":
            from soar.arith import ARITH

            return ARITH
        from soar.prompts import MATH

        return MATH

    def record(self, t: int) -> dict:
        """The step record of a committed step; step 0 is the starting state."""
        if t == 0:
            return {"baseline": None, "promotions": 0, "history": []}
        return read_json(self.store, f"steps/{t}/record.json")

    def hard(self, split: str) -> list[dict]:
        return read_jsonl(self.store, f"data/hard-{split}.jsonl")

    def reward_questions(self, t: int) -> list[dict]:
        """|Q_R| hard train questions, fresh each step, deterministic from (seed, t)."""
        pool = self.hard("train")
        rng = random.Random(derive_seed(self.spec.seed, "reward-questions", t))
        return rng.sample(pool, min(self.spec.reward.questions, len(pool)))

    def candidates(self, t: int) -> list[dict]:
        return read_jsonl(self.store, f"steps/{t}/candidates.jsonl")


def checker():
    from soar.verify import AnswerChecker

    return AnswerChecker(workers=1, timeout_s=5.0)


def _set_threads(spec: SoarRunSpec) -> None:
    import torch

    torch.set_num_threads(spec.execution.threadsPerStage)
    torch.manual_seed(spec.seed)


# ---------------------------------------------------------------------------------------- prepare


def prepare(run: Run, t: int, index: int | None) -> dict:
    """Copy (or build) the hard splits into the store, so every later stage reads only the store."""
    data = run.spec.data
    if data.builtin == "arith":
        train, test = _build_arith_hard_set(run)
    else:
        from soar.hardset import read_problems

        train = read_problems(data.hardTrain, data.questionField, data.answerField)
        test = read_problems(data.hardTest, data.questionField, data.answerField)
    if not train or not test:
        raise StageError(
            f"prepare: hard set is empty (train {len(train)}, test {len(test)} problems)"
        )
    write_jsonl(run.store, "data/hard-train.jsonl", train)
    write_jsonl(run.store, "data/hard-test.jsonl", test)
    return {"hard_train": len(train), "hard_test": len(test)}


def _build_arith_hard_set(run: Run) -> tuple[list[dict], list[dict]]:
    from soar.arith import build_arith_pool
    from soar.hardset import build_hard_set
    from soar.models import load_model
    from soar.sampler import TransformersSampler

    spec = run.spec
    model, tokenizer = load_model(spec.model.name, dtype=spec.model.dtype)
    pool = build_arith_pool(spec.data.poolSize, derive_seed(spec.seed, "pool"))
    pool = [{"id": f"arith-{i}", **problem} for i, problem in enumerate(pool)]
    with checker() as check:
        return build_hard_set(
            TransformersSampler(model, tokenizer),
            run.domain,
            pool,
            k=spec.data.failK,
            max_new_tokens=spec.student.maxNewTokens,
            temperature=spec.student.temperature,
            seed=derive_seed(spec.seed, "hard-set"),
            checker=check,
        )


# --------------------------------------------------------------------------------------- baseline


def baseline(run: Run, t: int, index: int | None) -> dict:
    """Greedy accuracy of the current baseline on Q_R, cached per question until a promotion."""
    from soar.checkpoints import load_checkpoint
    from soar.student import greedy_correct
    from soar.verify import correct_many

    pointer = run.record(t - 1)["baseline"]
    questions = run.reward_questions(t)
    cache_key = f"baseline-cache/{pointer or 'base'}.json"
    cache = read_json(run.store, cache_key) if run.store.exists(cache_key) else {}
    missing = [q for q in questions if q["id"] not in cache]
    if missing:
        model, tokenizer = load_checkpoint(run.store, pointer, run.spec.model)
        with checker() as check:
            correct = greedy_correct(
                model,
                tokenizer,
                missing,
                domain=run.domain,
                correct_fn=lambda c, r: correct_many(check, c, r),
                max_new_tokens=run.spec.student.maxNewTokens,
                batch_size=64,
            )
        cache.update({q["id"]: ok for q, ok in zip(missing, correct, strict=True)})
        write_json(run.store, cache_key, cache)
    correct = {q["id"]: cache[q["id"]] for q in questions}
    accuracy = fmean(correct.values())
    write_json(
        run.store,
        f"steps/{t}/baseline.json",
        {"baseline": pointer, "accuracy": accuracy, "correct": correct},
    )
    return {"accuracy": accuracy, "cached": len(questions) - len(missing)}


# ------------------------------------------------------------------------------- teacher-generate


def teacher_prefix(t: int) -> str:
    return f"checkpoints/teacher/{t}"


def load_teacher(run: Run, t: int, trainable: bool = False):
    """The teacher after step t (t = 0: the base model, with fresh LoRA adapters if configured)."""
    from soar.checkpoints import load_checkpoint
    from soar.student import make_student

    if t == 0:
        model, tokenizer = load_checkpoint(run.store, None, run.spec.model)
        lora = run.spec.teacher.lora
        return make_student(model, lora.model_dump() if lora else None), tokenizer
    return load_checkpoint(run.store, teacher_prefix(t), run.spec.model, trainable=trainable)


def teacher_generate(run: Run, t: int, index: int | None) -> dict:
    """Sample until g*n valid (question, answer) pairs exist; fail after maxGenerationRounds."""
    from soar.prompts import parse_teacher_output
    from soar.sampler import TransformersSampler

    spec = run.spec
    needed = spec.teacher.datasets * spec.teacher.questionsPerDataset
    model, tokenizer = load_teacher(run, t - 1)
    sampler = TransformersSampler(model, tokenizer)
    prompt = run.domain.teacher_prompt
    accepted: list[dict] = []
    attempts = 0
    with checker() as check:
        for round_ in range(spec.teacher.maxGenerationRounds):
            missing = needed - len(accepted)
            if missing <= 0:
                break
            samples = sampler.generate(
                [prompt],
                n=missing,
                temperature=spec.teacher.temperature,
                max_new_tokens=spec.teacher.maxNewTokens,
                seed=derive_seed(spec.seed, "teacher-generate", t, round_),
            )[0]
            attempts += len(samples)
            pairs = [parse_teacher_output(s.text) for s in samples]
            parsed = [(s, p) for s, p in zip(samples, pairs, strict=True) if p is not None]
            ok = check.parses_many([p.answer for _, p in parsed])
            for (sample, pair), valid in zip(parsed, ok, strict=True):
                if valid:
                    accepted.append(
                        {
                            "question": pair.question,
                            "answer": pair.answer,
                            "text": sample.text,
                            "token_ids": sample.token_ids,
                        }
                    )
    if len(accepted) < needed:
        raise StageError(
            f"teacher-generate step {t}: only {len(accepted)} of {needed} valid teacher outputs "
            f"after {spec.teacher.maxGenerationRounds} rounds ({attempts} samples); raise "
            "spec.teacher.maxGenerationRounds or check that the model follows the format"
        )
    accepted = accepted[:needed]
    for i, row in enumerate(accepted):
        row["dataset"] = i // spec.teacher.questionsPerDataset
        row["id"] = f"t{t}-{i}"
    write_jsonl(run.store, f"steps/{t}/candidates.jsonl", accepted)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    diversity = question_diversity([row["question"] for row in accepted])
    summary = {
        "attempts": attempts,
        "accepted": needed,
        "acceptance": needed / attempts,
        "vendi": diversity,
        "prompt_ids": prompt_ids,
    }
    write_json(run.store, f"steps/{t}/generation.json", summary)
    return {k: v for k, v in summary.items() if k != "prompt_ids"}


def question_diversity(questions: list[str]) -> float:
    from soar.evaluation import embed_questions, vendi_score

    return float(vendi_score(embed_questions(questions)))


# ---------------------------------------------------------------------------------------- student


def student_prefix(t: int, index: int) -> str:
    return f"steps/{t}/students/{index}/model"


def _train(run: Run, t: int, index: int, questions: list[dict], steps: int) -> tuple:
    """Copy the baseline and train it with RLOO on `questions` (their answers are the reference)."""
    from soar.checkpoints import load_checkpoint
    from soar.student import make_student, train_rloo
    from soar.verify import shaped_rewards

    spec = run.spec.student
    pointer = run.record(t - 1)["baseline"]
    model, tokenizer = load_checkpoint(run.store, pointer, run.spec.model)
    model = make_student(model, spec.lora.model_dump() if spec.lora else None)
    with checker() as check:
        stats = train_rloo(
            model,
            tokenizer,
            questions,
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
            seed=derive_seed(run.spec.seed, "student", t, index),
        )
    return model, tokenizer, pointer, stats


def _accuracy(run: Run, model, tokenizer, questions: list[dict]) -> float:
    from soar.student import greedy_correct
    from soar.verify import correct_many

    with checker() as check:
        correct = greedy_correct(
            model,
            tokenizer,
            questions,
            domain=run.domain,
            correct_fn=lambda c, r: correct_many(check, c, r),
            max_new_tokens=run.spec.student.maxNewTokens,
            batch_size=64,
        )
    return fmean(correct)


def student(run: Run, t: int, index: int | None) -> dict:
    """One inner loop (k, j) = divmod(index, r), a learnability probe, or a hard-only loop."""
    from soar.checkpoints import save_checkpoint

    spec = run.spec
    if index is None or not 0 <= index < student_count(spec):
        raise StageError(f"student step {t}: --index must be in [0, {student_count(spec)})")
    if spec.reward.kind == "learnability":
        return _learnability(run, t, index)
    steps = spec.student.innerSteps
    if run.record(t - 1)["promotions"] > 0:
        steps += spec.student.extraStepsAfterPromotion
    if spec.mode == "hard-only":
        questions = run.hard("train")
        dataset, repeat = None, 0
    else:
        dataset, repeat = divmod(index, spec.student.repeats)
        questions = [c for c in run.candidates(t) if c["dataset"] == dataset]
    model, tokenizer, pointer, stats = _train(run, t, index, questions, steps)
    accuracy = _accuracy(run, model, tokenizer, run.reward_questions(t))
    base_accuracy = read_json(run.store, f"steps/{t}/baseline.json")["accuracy"]
    save_checkpoint(run.store, student_prefix(t, index), model, tokenizer, adapter_base=pointer)
    result = {
        "dataset": dataset,
        "repeat": repeat,
        "inner_steps": steps,
        "accuracy": accuracy,
        "baseline_accuracy": base_accuracy,
        "reward": accuracy - base_accuracy,
        "train": [{k: v for k, v in s.items() if k != "seconds"} for s in stats],
    }
    write_json(run.store, f"steps/{t}/students/{index}/result.json", result)
    train_seconds = sum(s["seconds"] for s in stats)
    return {"reward": result["reward"], "accuracy": accuracy, "train_seconds": train_seconds}


def _learnability(run: Run, t: int, index: int) -> dict:
    """Intrinsic-T: per question p = success rate of the baseline; reward 0 if p = 0 else 1 - p."""
    from soar.checkpoints import load_checkpoint
    from soar.sampler import TransformersSampler
    from soar.verify import correct_many

    spec = run.spec
    questions = [c for c in run.candidates(t) if c["dataset"] == index]
    model, tokenizer = load_checkpoint(run.store, run.record(t - 1)["baseline"], spec.model)
    n = spec.reward.learnabilitySamples
    samples = TransformersSampler(model, tokenizer).generate(
        [run.domain.student_prompt(q["question"]) for q in questions],
        n=n,
        temperature=spec.student.temperature,
        max_new_tokens=spec.student.maxNewTokens,
        seed=derive_seed(spec.seed, "learnability", t, index),
    )
    with checker() as check:
        texts = [s.text for group in samples for s in group]
        refs = [q["answer"] for q in questions for _ in range(n)]
        correct = correct_many(check, texts, refs)
    rates = [fmean(correct[i * n : (i + 1) * n]) for i in range(len(questions))]
    reward = fmean(0.0 if p == 0 else 1.0 - p for p in rates)
    result = {"dataset": index, "repeat": 0, "success_rates": rates, "reward": reward}
    write_json(run.store, f"steps/{t}/students/{index}/result.json", result)
    return {"reward": reward}


# --------------------------------------------------------------------------------- teacher-update


def teacher_update(run: Run, t: int, index: int | None) -> dict:
    """Teacher reward, promotion, the teacher's RLOO step, and the step record (the commit)."""
    spec = run.spec
    previous = run.record(t - 1)
    results = [
        read_json(run.store, f"steps/{t}/students/{i}/result.json")
        for i in range(student_count(spec))
    ]
    record: dict = {"step": t, "baseline": previous["baseline"]}
    record["promotions"] = previous["promotions"]
    if spec.mode == "hard-only":
        record.update(_promote(run, t, 0, None, record["promotions"]))
        record.update({"history": [], "student_rewards": [[results[0]["reward"]]]})
    else:
        if spec.reward.kind == "learnability":
            grid = [[r["reward"]] for r in results]
            decision = None
        else:
            r = spec.student.repeats
            grid = [
                [results[k * r + j]["reward"] for j in range(r)] for k in range(len(results) // r)
            ]
            decision = decide(
                previous["history"], grid, spec.promotion.threshold, spec.promotion.window
            )
        rewards = [fmean(row) for row in grid]
        record["student_rewards"] = grid
        record["dataset_rewards"] = rewards
        record["teacher_reward"] = fmean(rewards)
        record["moving_average"] = decision.moving_average if decision else None
        record["history"] = decision.history if decision else []
        record["promoted"] = bool(decision and decision.promoted)
        if decision and decision.promoted:
            record.update(
                _promote(run, t, decision.student, decision.dataset, record["promotions"])
            )
        record["teacher"] = _update_teacher(run, t, rewards)
    generation = f"steps/{t}/generation.json"
    if run.store.exists(generation):
        gen = read_json(run.store, generation)
        record["generation"] = {k: gen[k] for k in ("attempts", "acceptance", "vendi")}
    baseline_file = f"steps/{t}/baseline.json"
    if run.store.exists(baseline_file):  # the learnability reward needs no baseline accuracy
        record["baseline_accuracy"] = read_json(run.store, baseline_file)["accuracy"]
    write_json(run.store, f"steps/{t}/record.json", record)
    write_json(run.store, "state.json", {"step": t, "promotions": record["promotions"]})
    return {k: record.get(k) for k in ("teacher_reward", "moving_average", "promoted")}


def _promote(run: Run, t: int, index: int, dataset: int | None, promotions: int) -> dict:
    """The chosen student becomes the baseline (merged if LoRA); its dataset joins PQ."""
    from soar.checkpoints import has_checkpoint, load_checkpoint, save_checkpoint

    number = promotions + 1
    target = f"checkpoints/student/{number}"
    if not has_checkpoint(run.store, target):
        model, tokenizer = load_checkpoint(run.store, student_prefix(t, index), run.spec.model)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        save_checkpoint(run.store, target, model, tokenizer)
    if dataset is not None:
        rows = [
            {"step": t, "dataset": dataset, "question": c["question"], "answer": c["answer"]}
            for c in run.candidates(t)
            if c["dataset"] == dataset
        ]
        write_jsonl(run.store, f"pq/{t}.jsonl", rows)
        parts = sorted(run.store.list("pq"), key=lambda k: int(k.split("/")[-1].split(".")[0]))
        pq = [row for key in parts for row in read_jsonl(run.store, key)]
        write_jsonl(run.store, "pq.jsonl", pq)
    return {"baseline": target, "promotions": number, "promoted_student": index}


def _update_teacher(run: Run, t: int, rewards: list[float]) -> dict:
    """One RLOO step of the teacher over all accepted rollouts; saves checkpoint t."""
    from soar.checkpoints import load_checkpoint, save_checkpoint
    from soar.teacher import (
        cosine_lr,
        dataset_advantages,
        load_optimizer_state,
        make_optimizer,
        optimizer_bytes,
        teacher_step,
    )

    spec = run.spec.teacher
    policy, tokenizer = load_teacher(run, t - 1, trainable=True)
    ref = None
    if spec.klCoef > 0:
        ref, _ = load_checkpoint(run.store, None, run.spec.model)
        ref.eval()
    optimizer = make_optimizer(policy, spec.learningRate)
    if t > 1:
        load_optimizer_state(
            optimizer, run.store.read_bytes(f"{teacher_prefix(t - 1)}-optimizer.pt")
        )
    candidates = run.candidates(t)
    advantages = dataset_advantages(rewards)
    prompt_ids = read_json(run.store, f"steps/{t}/generation.json")["prompt_ids"]
    stats = teacher_step(
        policy,
        ref,
        prompt_ids,
        [c["token_ids"] for c in candidates],
        [advantages[c["dataset"]] for c in candidates],
        optimizer=optimizer,
        lr=cosine_lr(t, spec.warmupSteps, run.spec.steps, spec.learningRate),
        kl_coef=spec.klCoef,
        max_grad_norm=run.spec.training.maxGradNorm,
        normalisation=run.spec.training.lossNormalisation,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        temperature=spec.temperature,
    )
    save_checkpoint(run.store, teacher_prefix(t), policy, tokenizer)
    run.store.write_bytes(f"{teacher_prefix(t)}-optimizer.pt", optimizer_bytes(optimizer))
    old = t - spec.keepCheckpoints
    if old >= 1:
        run.store.delete(teacher_prefix(old))
        run.store.delete(f"{teacher_prefix(old)}-optimizer.pt")
    return {"advantages": advantages, **stats}


# --------------------------------------------------------------------------------------- evaluate


def evaluate(run: Run, t: int, index: int | None) -> dict:
    """pass@k on the hard test split and greedy accuracy on the hard train split of the baseline
    after step t; at the last step, also choose PS among the promoted students."""
    from soar.checkpoints import load_checkpoint
    from soar.evaluation import mean_pass_at_k
    from soar.sampler import TransformersSampler
    from soar.verify import correct_many

    spec = run.spec
    pointer = run.record(t)["baseline"]
    problems = run.hard("test")[: spec.evaluation.maxProblems]
    model, tokenizer = load_checkpoint(run.store, pointer, spec.model)
    n = spec.evaluation.samples
    samples = TransformersSampler(model, tokenizer).generate(
        [run.domain.student_prompt(p["question"]) for p in problems],
        n=n,
        temperature=spec.student.temperature,
        max_new_tokens=spec.student.maxNewTokens,
        seed=derive_seed(spec.seed, "evaluate", t),
    )
    with checker() as check:
        texts = [s.text for group in samples for s in group]
        correct = correct_many(check, texts, [p["answer"] for p in problems for _ in range(n)])
    counts = [sum(correct[i * n : (i + 1) * n]) for i in range(len(problems))]
    result = {
        "step": t,
        "baseline": pointer,
        "problems": len(problems),
        "pass_at_k": mean_pass_at_k(counts, n, spec.evaluation.ks),
        "hard_train_accuracy": train_accuracy(run, pointer),
    }
    if t == spec.steps:
        result["ps"] = select_ps(run, t)
    write_json(run.store, f"eval/{t}.json", result)
    return {k: result[k] for k in ("pass_at_k", "hard_train_accuracy")}


def train_accuracy(run: Run, pointer: str | None) -> float:
    """Greedy accuracy of a student on the whole hard train split, computed once per student."""
    from soar.checkpoints import load_checkpoint

    key = f"eval/train-accuracy/{(pointer or 'base').replace('/', '-')}.json"
    if run.store.exists(key):
        return read_json(run.store, key)["accuracy"]
    model, tokenizer = load_checkpoint(run.store, pointer, run.spec.model)
    accuracy = _accuracy(run, model, tokenizer, run.hard("train"))
    write_json(run.store, key, {"student": pointer, "accuracy": accuracy})
    return accuracy


def select_ps(run: Run, t: int) -> dict:
    """PS: the promoted student with the best greedy hard-train accuracy (the latest on ties)."""
    promoted = [f"checkpoints/student/{p}" for p in range(1, run.record(t)["promotions"] + 1)]
    accuracies = {pointer: train_accuracy(run, pointer) for pointer in promoted}
    best = max(reversed(promoted), key=accuracies.__getitem__, default=None)
    ps = {"student": best, "accuracy": accuracies.get(best), "candidates": accuracies}
    write_json(run.store, "ps.json", ps)
    return ps


STAGE_FUNCTIONS = {
    "prepare": prepare,
    "teacher-generate": teacher_generate,
    "baseline": baseline,
    "student": student,
    "teacher-update": teacher_update,
    "evaluate": evaluate,
}


def run_stage(store: Store, name: str, step: int, index: int | None) -> dict:
    """Run one stage unless its completion manifest exists; write the manifest last."""
    if name not in STAGE_FUNCTIONS:
        raise StageError(f"unknown stage {name!r}; one of {', '.join(STAGE_FUNCTIONS)}")
    stage = Stage(name, step, index)
    if store.exists(done_key(stage)):
        return read_json(store, done_key(stage))
    run = Run.open(store)
    _set_threads(run.spec)
    started = time.time()
    summary = STAGE_FUNCTIONS[name](run, step, index)
    manifest = {
        "stage": name,
        "step": step,
        "index": index,
        "started": started,
        "seconds": round(time.time() - started, 3),
        "summary": summary,
    }
    store.create(done_key(stage), json.dumps(manifest, sort_keys=True).encode())
    return manifest
