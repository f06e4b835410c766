"""The `soar` command: run, validate, stage, crd, report, data."""

import argparse
import os
import sys
import time
from pathlib import Path

from soar import layout
from soar.contract import (
    EXIT_INTERRUPTED,
    EXIT_PERMANENT,
    EXIT_TRANSIENT,
    POD_NAME_ENV,
    stage_index,
)
from soar.manifest import load_run
from soar.planner import Stage
from soar.pod_log import archived_output
from soar.runstate import StageError, completed
from soar.spec import SpecError
from soar.store import open_store


def cmd_validate(args: argparse.Namespace) -> int:
    failed = False
    for path in args.manifests:
        try:
            run = load_run(path)
            print(f"{path}: ok (SoarRun {run.metadata.name})")
        except SpecError as err:
            print(err, file=sys.stderr)
            failed = True
    return 1 if failed else 0


def cmd_run(args: argparse.Namespace) -> int:
    from soar.report import summary

    started = time.time()
    store = drive(Path(args.manifest), args.parallelism, wait=args.wait)
    print()
    print(summary(store, completed(store)))
    print(f"\nfinished in {time.time() - started:.1f}s")
    return 0


def drive(manifest: Path, parallelism: int | None, wait: bool = False):
    """Run (or resume) a manifest to completion with the local executor, printing each finished
    stage; returns its store."""
    from soar.executor import LocalExecutor, open_run
    from soar.planner import total_steps

    run = load_run(manifest)
    # The store's S3 settings reach this process and, through the environment, every stage.
    os.environ.update(run.spec.storage.s3_options().env())
    store, spec, lease = open_run(run, manifest.resolve().parent, Path.cwd(), wait=wait)
    total = total_steps(spec)
    print(f"SoarRun {run.metadata.name}: {total} steps, store {store.uri}", flush=True)
    started = time.time()

    def on_event(kind: str, stage, manifest: dict) -> None:
        if kind != "finished":
            return
        info = manifest.get("summary") or {}
        shown = ", ".join(f"{k}={_short(v)}" for k, v in info.items())
        elapsed = time.time() - started
        print(
            f"[{elapsed:7.1f}s] step {stage.step}/{total} {stage.key.split('/')[-1]:<18} "
            f"{manifest['seconds']:6.1f}s  {shown}",
            flush=True,
        )

    try:
        LocalExecutor(store, spec, parallelism or spec.execution.parallelism, lease, on_event).run()
    finally:
        lease.release()
    return store


def cmd_experiment(args: argparse.Namespace) -> int:
    from soar.experiment import load_config, run_experiment

    path = Path(args.config)
    config = load_config(path)
    started = time.time()
    run_experiment(config, path.resolve().parent, drive)
    output = (path.resolve().parent / config.output).resolve()
    print((output / "results.md").read_text())
    print(f"experiment finished in {time.time() - started:.1f}s; results in {output}")
    return 0


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def cmd_stage(args: argparse.Namespace) -> int:
    from soar.stages.runner import run_stage

    manifest = run_stage(open_store(args.run), args.name, args.step, stage_index(args.index))
    print(f"stage {args.name} step {args.step} done in {manifest['seconds']}s", flush=True)
    return 0


def cmd_crd(args: argparse.Namespace) -> int:
    from soar.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from soar.report import summary

    store = open_store(args.run)
    if args.html:
        from soar.report_html import write_html

        print(f"report: {write_html(store, completed(store), args.html)}")
        return 0
    print(summary(store, completed(store)))
    return 0


def cmd_sample_questions(args: argparse.Namespace) -> int:
    from soar.hardset import write_jsonl
    from soar.runstate import Run
    from soar.stages.teacher import sample_questions

    run = Run.open(open_store(args.run))
    questions = sample_questions(run, args.step, args.count, args.seed)
    write_jsonl(args.out, questions)
    print(f"{len(questions)} questions from the teacher after step {args.step} -> {args.out}")
    return 0


def cmd_build_hard_set(args: argparse.Namespace) -> int:
    from soar.hardset import build_hard_set, read_problems, write_jsonl
    from soar.models import load_model
    from soar.prompts import MATH
    from soar.sampler import TransformersSampler
    from soar.verify import AnswerChecker

    domain = MATH
    if args.domain == "arith":
        from soar.arith import ARITH

        domain = ARITH
    problems = read_problems(args.input, args.question_field, args.answer_field)
    model, tokenizer = load_model(args.model)
    with AnswerChecker(workers=args.workers) as checker:
        train, test = build_hard_set(
            TransformersSampler(model, tokenizer),
            domain,
            problems,
            k=args.k,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            seed=args.seed,
            checker=checker,
        )
    write_jsonl(args.train_out, train)
    write_jsonl(args.test_out, test)
    print(
        f"{len(problems)} problems, {len(train) + len(test)} fail@{args.k}: "
        f"{len(train)} -> {args.train_out}, {len(test)} -> {args.test_out}"
    )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="soar", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run (or resume) a SoarRun locally")
    run.add_argument("manifest")
    run.add_argument("--parallelism", type=int, help="stages at once (default: spec.execution)")
    run.add_argument(
        "--wait", action="store_true", help="wait for another executor driving the run to stop"
    )
    run.set_defaults(func=cmd_run)

    experiment = sub.add_parser(
        "experiment", help="SOAR, Intrinsic-T and Hard-Only over seeds, with the paper's table"
    )
    experiment.add_argument("config", help="experiment YAML (see soar/experiment.py)")
    experiment.set_defaults(func=cmd_experiment)

    validate = sub.add_parser("validate", help="check manifests without running anything")
    validate.add_argument("manifests", nargs="+")
    validate.set_defaults(func=cmd_validate)

    stage = sub.add_parser("stage", help="run one stage of a run (what executors call)")
    stage.add_argument("name")
    stage.add_argument("--run", required=True, help="run store URI")
    stage.add_argument("--step", type=int, required=True)
    stage.add_argument("--index", type=int, help="student index (default: $JOB_COMPLETION_INDEX)")
    stage.set_defaults(func=cmd_stage)

    crd = sub.add_parser("crd", help="print the SoarRun CustomResourceDefinition")
    crd.set_defaults(func=cmd_crd)

    report = sub.add_parser("report", help="summarise a run store")
    report.add_argument("run", help="run store URI")
    report.add_argument(
        "--html",
        metavar="DIR",
        type=Path,
        help="write DIR/index.html and its PNG plots instead (needs the experiment extra)",
    )
    report.set_defaults(func=cmd_report)

    sample = sub.add_parser(
        "sample-questions",
        help="sample (question, answer) pairs from a run's teacher, for evaluate-questions runs",
    )
    sample.add_argument("run", help="run store URI")
    sample.add_argument("--step", type=int, required=True, help="teacher after this step (0: base)")
    sample.add_argument("--count", type=int, default=128)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", required=True, help="JSONL file to write")
    sample.set_defaults(func=cmd_sample_questions)

    data = sub.add_parser("data", help="data tools").add_subparsers(dest="tool", required=True)
    hard = data.add_parser("build-hard-set", help="keep the problems a model fails k times of k")
    hard.add_argument("--model", required=True, help="model ref or checkpoint directory")
    hard.add_argument("--input", required=True, help="JSONL of problems")
    hard.add_argument("--train-out", required=True)
    hard.add_argument("--test-out", required=True)
    hard.add_argument("--k", type=int, default=128)
    hard.add_argument("--domain", choices=["math", "arith"], default="math")
    hard.add_argument("--question-field", default="question")
    hard.add_argument("--answer-field", default="answer")
    hard.add_argument("--max-new-tokens", type=int, default=1024)
    hard.add_argument("--temperature", type=float, default=1.0)
    hard.add_argument("--seed", type=int, default=0)
    hard.add_argument("--workers", type=int, default=1)
    hard.set_defaults(func=cmd_build_hard_set)
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit codes say whether a retry can help (soar.contract): bad input exits EXIT_PERMANENT.
    In a stage pod, `soar stage` archives its own output to the store (soar/pod_log.py)."""
    args = parser().parse_args(argv)
    pod = os.environ.get(POD_NAME_ENV) if args.func is cmd_stage else None
    if not pod:
        return run_command(args)
    stage = Stage(args.name, args.step, stage_index(args.index))
    with archived_output(args.run, layout.pod_log(stage.key, pod)):
        return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """The subcommand, its errors turned into one `error:` line and an exit code."""
    from soar.executor import ExecutorError

    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ExecutorError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_PERMANENT if err.exit_code == EXIT_PERMANENT else EXIT_TRANSIENT
    except (SpecError, StageError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_PERMANENT
    except (RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_TRANSIENT
