"""The prepare stage (before step 1): the hard splits go into the store, so every later stage
reads only the store (docs/design.md, "Choices where the paper is silent")."""

from soar import layout
from soar.arith import build_arith_pool
from soar.decode import make_sampler
from soar.grading import answer_checker
from soar.hardset import build_hard_set, read_problems
from soar.models import load_model
from soar.runstate import Run, StageError, derive_seed
from soar.store import write_jsonl


def prepare(run: Run, t: int, index: int | None) -> dict:
    """Copy the user's hard splits, or build the built-in arithmetic one by fail@k; and a fresh
    student's synthetic questions (mode evaluate-questions)."""
    data = run.spec.data
    skipped: list[str] = []
    options = {
        "question_field": data.questionField,
        "answer_field": data.answerField,
        "max_question_chars": data.maxQuestionChars,
        "max_answer_chars": data.maxAnswerChars,
        "on_invalid_row": skipped.append if data.skipInvalidRows else None,
    }
    if data.builtin == "arith":
        train, test = build_arith_hard_set(run)
    else:
        train = read_problems(data.hardTrain, **options)
        test = read_problems(data.hardTest, **options)
    questions = run.spec.freshStudent.questions
    if questions is not None:
        # PQ and `soar sample-questions` write the fields `question` and `answer`.
        fields = {"question_field": "question", "answer_field": "answer"}
        synthetic = read_problems(questions, **options | fields)
        if not synthetic:
            raise StageError(f"prepare: {questions} holds no valid question")
        write_jsonl(run.store, layout.QUESTIONS, synthetic)
    if not train or not test:
        raise StageError(
            f"prepare: hard set is empty (train {len(train)}, test {len(test)} problems)"
        )
    for message in skipped:
        print(f"skipped: {message}", flush=True)  # into the stage's log
    write_jsonl(run.store, layout.hard_split("train"), train)
    write_jsonl(run.store, layout.hard_split("test"), test)
    summary = {"hard_train": len(train), "hard_test": len(test)}
    if questions is not None:
        summary["questions"] = len(synthetic)
    return summary | ({"skipped_rows": len(skipped)} if skipped else {})


def build_arith_hard_set(run: Run) -> tuple[list[dict], list[dict]]:
    """The pool's problems that the base model fails failK times of failK, split 50/50."""
    spec = run.spec
    model, tokenizer = load_model(spec.model.name, dtype=spec.model.dtype)
    pool = build_arith_pool(spec.data.poolSize, derive_seed(spec.seed, "pool"))
    pool = [{"id": f"arith-{i}", **problem} for i, problem in enumerate(pool)]
    with answer_checker() as check:
        return build_hard_set(
            make_sampler(spec.training, model, tokenizer),
            run.domain,
            pool,
            k=spec.data.failK,
            max_new_tokens=spec.student.maxNewTokens,
            temperature=spec.student.temperature,
            seed=derive_seed(spec.seed, "hard-set"),
            checker=check,
        )
