"""Projected GPU-hours of one outer step of the paper's configuration, from measured rates.

A projection, not a measurement: it counts the tokens one outer step generates and trains
(docs/design.md, "The algorithm"), term by term, from the paper's defaults in `soar.spec`, and
divides each term's FLOPs on the target model (Llama-3.2-3B's shape) by the FLOP/s that
throughput.py achieved on the measured shape. That is the measured tokens/s scaled by the ratio
of FLOPs per token (shapes.py), which for decoding is also about the ratio of weight bytes read
per step. Assumptions, each a flag:

- every sample runs to max_new_tokens (--length-fraction 1.0: an upper bound; trained models
  stop earlier), and every teacher sample is accepted (--acceptance 1.0);
- no promotion yet, so 10 inner steps (--promotions 2 gives the cap, 20);
- the baseline's greedy answers on Q_R are not cached (an upper bound);
- prompts of 150 tokens (student: chat template, preamble, a MATH question) and 250 (teacher),
  counted in the trained sequences but not as generated tokens (prefill is cheap);
- the hard test split has 250 problems (--hard-test-problems; it depends on the model and
  fail@k), evaluated every `evaluation.every` steps, so a tenth of it per step;
- every generation runs at the best FLOP/s measured (any sampler, at the benchmark's batch of
  256 rows), every training pass at the measured training FLOP/s; loading and saving models,
  scheduling pods and grading answers are left out.

    python benchmarks/gpu/projection.py                   # the token count alone
    python benchmarks/gpu/projection.py --measured /tmp/soar-gpu-bench/1b.json
    python benchmarks/gpu/projection.py --assume-mfu 0.10 0.30   # no measurement: assumed rates

--assume-mfu GEN TRAIN replaces measured rates by fractions of an H100's dense bf16 peak
(989 TFLOP/s, --peak-tflops): what one outer step would cost if generation and training ran at
those utilisations. It is an assumption about rates, stated as such in the output.
"""

import argparse
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]  # shapes.py; soar
from shapes import SHAPES, Shape  # noqa: E402


@dataclass(frozen=True)
class PaperConfig:
    """The numbers of `soar.spec`'s defaults that set the work of one outer step."""

    datasets: int = 4  # g
    questions_per_dataset: int = 64  # n
    teacher_new_tokens: int = 512
    teacher_kl: bool = True  # a reference forward per trained token
    repeats: int = 4  # r
    inner_steps: int = 10
    extra_steps_after_promotion: int = 5
    max_inner_steps: int = 20
    batch_questions: int = 8
    group_size: int = 32
    student_new_tokens: int = 1024
    student_kl: bool = True
    reward_questions: int = 64  # |Q_R|
    eval_every: int = 10
    eval_samples: int = 32

    @classmethod
    def from_spec(cls) -> "PaperConfig":
        """Read the defaults of `soar.spec.SoarRunSpec` (needs pydantic)."""
        from soar.spec import SoarRunSpec

        spec = SoarRunSpec.model_validate({"data": {"builtin": "arith"}})
        t, s = spec.teacher, spec.student
        return cls(
            datasets=t.datasets,
            questions_per_dataset=t.questionsPerDataset,
            teacher_new_tokens=t.maxNewTokens,
            teacher_kl=t.klCoef > 0,
            repeats=s.repeats,
            inner_steps=s.innerSteps,
            extra_steps_after_promotion=s.extraStepsAfterPromotion,
            max_inner_steps=s.maxInnerSteps,
            batch_questions=s.batchQuestions,
            group_size=s.groupSize,
            student_new_tokens=s.maxNewTokens,
            student_kl=s.klCoef > 0,
            reward_questions=spec.reward.questions,
            eval_every=spec.evaluation.every,
            eval_samples=spec.evaluation.samples,
        )


def paper_config() -> tuple[PaperConfig, str]:
    """The spec's defaults, or where pydantic is missing (the GPU image) the copy above, which
    the CPU smoke test checks against the spec."""
    try:
        config = PaperConfig.from_spec()
    except ImportError as e:
        return PaperConfig(), f"copy of soar.spec defaults (soar.spec not importable: {e})"
    if config != PaperConfig():
        print(f"note: PaperConfig's copy differs from soar.spec's defaults: {config}")
    return config, "soar.spec defaults"


@dataclass(frozen=True)
class Assumptions:
    length_fraction: float = 1.0  # mean completion length / max_new_tokens
    acceptance: float = 1.0  # accepted / drawn teacher samples
    promotions: int = 0
    student_prompt: int = 150  # tokens
    teacher_prompt: int = 250
    hard_test_problems: int = 250


@dataclass(frozen=True)
class Term:
    """`rows` sequences of `prompt` + `new_tokens` tokens, generated and/or trained; `parallel`
    GPUs share the term (the student stage runs g x r pods at once)."""

    stage: str
    what: str
    rows: float
    prompt: int
    new_tokens: float
    generated: bool
    trained: bool
    kl: bool = False  # trained with a reference forward
    parallel: int = 1
    in_wall: bool = True  # on the step's critical path (evaluation runs beside it)

    @property
    def tokens(self) -> float:
        return self.rows * self.new_tokens

    def generate_flops(self, shape: Shape) -> float:
        """Decode FLOPs: token i attends to prompt + i positions; the mean context is exact
        because FLOPs are linear in it. Prefill is left out."""
        if not self.generated:
            return 0.0
        return self.tokens * shape.forward_flops(self.prompt + (self.new_tokens + 1) / 2)

    def train_flops(self, shape: Shape) -> float:
        """Forward and backward over prompt + completion, plus the reference's forward if KL."""
        if not self.trained:
            return 0.0
        length = self.prompt + self.new_tokens
        per_token = shape.train_flops(length) + (shape.forward_flops(length) if self.kl else 0.0)
        return self.rows * length * per_token


def outer_step_terms(config: PaperConfig, a: Assumptions) -> list[Term]:
    """The work of one outer step (docs/design.md, "The algorithm", steps 1-7, and evaluation)."""
    g, n, r = config.datasets, config.questions_per_dataset, config.repeats
    teacher_len = a.length_fraction * config.teacher_new_tokens
    student_len = a.length_fraction * config.student_new_tokens
    steps = min(
        config.inner_steps + config.extra_steps_after_promotion * a.promotions,
        config.max_inner_steps,
    )
    rollouts = config.batch_questions * config.group_size  # per inner step
    return [
        # 1) g*n accepted pairs, g*n/acceptance samples drawn.
        Term("teacher-generate", f"{g}x{n}/{a.acceptance:g} samples",
             g * n / a.acceptance, a.teacher_prompt, teacher_len, True, False),
        # 3) the baseline's greedy answers on Q_R.
        Term("baseline", f"{config.reward_questions} Q_R greedy",
             config.reward_questions, a.student_prompt, student_len, True, False),
        # 4) g*r inner loops x steps x (batch questions x group) rollouts, sampled and trained.
        Term("student", f"{g}x{r} loops x {steps} steps x {rollouts} rollouts",
             g * r * steps * rollouts, a.student_prompt, student_len, True, True,
             kl=config.student_kl, parallel=g * r),
        # 4) each trained student's greedy answers on Q_R.
        Term("student", f"{g}x{r} x {config.reward_questions} Q_R greedy",
             g * r * config.reward_questions, a.student_prompt, student_len, True, False,
             parallel=g * r),
        # 7) the teacher's RLOO step over its g*n accepted rollouts.
        Term("teacher-update", f"{g}x{n} rollouts",
             g * n, a.teacher_prompt, teacher_len, False, True, kl=config.teacher_kl),
        # evaluation: hard test problems x samples, every eval_every steps.
        Term("evaluate", f"{a.hard_test_problems}x{config.eval_samples} / {config.eval_every}",
             a.hard_test_problems * config.eval_samples / config.eval_every,
             a.student_prompt, student_len, True, False, in_wall=False),
    ]  # fmt: skip


@dataclass(frozen=True)
class Rates:
    """Achieved FLOP/s of the measured shape, and where each number came from."""

    generate_flops: float
    generate_label: str
    train_flops: float
    train_label: str


def generation_runs(results: dict) -> list[dict]:
    """Every timed generate() of a throughput.py results file."""
    phases = results.get("phases", {})
    runs = [*phases.get("generate", {}).values(), *phases.get("compiled", {}).values()]
    return [r for r in runs if isinstance(r, dict) and r.get("flops_per_s")]


def rates_from_results(results: dict) -> Rates | None:
    """The training rate and the best generation rate (highest FLOP/s, any sampler or length)
    of a throughput.py results file; None if either is missing."""
    train = results.get("phases", {}).get("train", {})
    runs = generation_runs(results)
    if not train.get("flops_per_s") or not runs:
        return None
    best = max(runs, key=lambda r: r["flops_per_s"])
    return Rates(
        best["flops_per_s"],
        f"{best['sampler']}, {best['batch']} rows x {best['new_tokens']} tokens",
        train["flops_per_s"],
        f"RLOO forward+backward+reference, {train['rollouts']} x {train['completion']} tokens",
    )


def summary(results: dict) -> list[str]:
    """A few lines of what a throughput.py run measured."""
    phases = results.get("phases", {})
    lines = [f"{results['shape']} on {results.get('device', '?')}:"]
    for name, entry in phases.items():
        if "error" in entry:
            lines.append(f"  {name}: FAILED {entry['error']}")
    train = phases.get("train", {})
    if "flops_per_s" in train:
        lines.append(
            f"  train: {train['trained_tokens_per_s']:,.0f} tokens/s, "
            f"{train['flops_per_s'] / 1e12:.0f} TFLOP/s, MFU {percent(train['mfu'])} "
            f"(goal >= 30% on 1b){peak(train)}"
        )
    runs = generation_runs(results)
    today = phases.get("generate", {}).get("transformers_sampler", {}).get("tokens_per_s")
    for r in runs:
        ratio = f", {r['tokens_per_s'] / today:.1f}x today's" if today else ""
        lines.append(
            f"  generate {r['sampler']} {r['batch']}x{r['new_tokens']}: "
            f"{r['tokens_per_s']:,.0f} tokens/s{ratio}"
        )
    for name in ("generate", "compiled"):
        if "peak_memory_gib" in phases.get(name, {}):
            lines.append(f"  {name}:{peak(phases[name])[1:]}")
    teacher, inner = phases.get("teacher", {}), phases.get("inner", {})
    for name, key in [("generate", "device_sampler_error"), ("inner", "device_error")]:
        if key in phases.get(name, {}):
            lines.append(f"  {name}: DeviceSampler FAILED {phases[name][key]}")
    if "seconds" in teacher:
        lines.append(
            f"  teacher update {teacher['rollouts']}x{teacher['completion']}: "
            f"{teacher['seconds']:.1f} s, MFU {percent(teacher['mfu'])}{peak(teacher)}"
        )
    if "seconds" in inner:
        lines.append(
            f"  inner loop {inner['steps']} steps x {inner['rollouts']}x{inner['new_tokens']} "
            f"({inner['sampler']}): {inner['seconds']:.1f} s{peak(inner)}"
        )
    return lines


def peak(entry: dict) -> str:
    """ ", peak X GiB" where the phase ran on a GPU, else nothing."""
    gib = entry.get("peak_memory_gib")
    return "" if gib is None else f", peak {gib:.1f} GiB"


def percent(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def print_projection(
    config: PaperConfig,
    assumptions: Assumptions,
    source: str,
    target: Shape,
    rates: Rates | None = None,
    measured: Shape | None = None,
) -> dict:
    """The term-by-term token count; with rates, each term's projected GPU-seconds on `target`
    (generation and training apart) and the totals. Returns the totals."""
    # 1. The table: one row per term, the totals below.
    terms = outer_step_terms(config, assumptions)
    print(f"One outer step of the paper config ({source}); {assumptions}")
    header = f"{'stage':<16} {'work':<42} {'generated':>11} {'trained':>11}"
    print(header + (f" {'gen GPU-s':>10} {'train GPU-s':>11}" if rates else ""))
    totals = dict.fromkeys(["generated", "trained", "gen_s", "train_s", "wall_s"], 0.0)
    for term in terms:
        generated = term.tokens if term.generated else 0.0
        trained = term.tokens if term.trained else 0.0
        totals["generated"] += generated
        totals["trained"] += trained
        line = f"{term.stage:<16} {term.what:<42} {generated:>11,.0f} {trained:>11,.0f}"
        if rates:
            gen_s = term.generate_flops(target) / rates.generate_flops
            train_s = term.train_flops(target) / rates.train_flops
            totals["gen_s"] += gen_s
            totals["train_s"] += train_s
            totals["wall_s"] += (gen_s + train_s) / term.parallel if term.in_wall else 0.0
            line += f" {gen_s:>10,.0f} {train_s:>11,.0f}"
        print(line)
    total = f"{'total':<59} {totals['generated']:>11,.0f} {totals['trained']:>11,.0f}"
    print(total + (f" {totals['gen_s']:>10,.0f} {totals['train_s']:>11,.0f}" if rates else ""))
    if not rates:
        return totals
    # 2. The rates behind it, as target tokens/s at the student's lengths (the bulk of the work).
    source_of_rates = (
        "assumed FLOP/s" if measured is None else f"FLOP/s measured on the {measured.name} shape"
    )
    print(
        f"PROJECTION, not a measurement: {source_of_rates}, applied to {target.name}'s FLOPs "
        f"per token ({target.params() / 1e9:.2f}B parameters)"
    )
    student_len = assumptions.length_fraction * config.student_new_tokens
    context = assumptions.student_prompt + (student_len + 1) / 2  # a decoded token's
    sequence = assumptions.student_prompt + student_len  # a trained rollout's positions
    per_completion_token = (
        (target.train_flops(sequence) + target.forward_flops(sequence)) * sequence / student_len
    )
    print(
        f"  generation: {rates.generate_flops / 1e12:.1f} TFLOP/s ({rates.generate_label}) = "
        f"{rates.generate_flops / target.forward_flops(context):,.0f} {target.name} "
        f"tokens/s at context {context:.0f}"
    )
    print(
        f"  training: {rates.train_flops / 1e12:.1f} TFLOP/s ({rates.train_label}) = "
        f"{rates.train_flops / per_completion_token:,.0f} {target.name} completion tokens/s "
        f"of {assumptions.student_prompt} + {student_len:.0f}-token rollouts"
    )
    # 3. The closing note.
    hours = (totals["gen_s"] + totals["train_s"]) / 3600
    print(
        f"  projected {hours:.2f} GPU-hours per outer step of the paper config on this GPU "
        f"(paper: ~8, 32 GPUs x ~15 min; goal <= 1); wall {totals['wall_s'] / 60:.1f} min "
        f"with the {config.datasets * config.repeats} student loops on parallel GPUs"
    )
    return totals


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--measured", action="append", default=[], help="throughput.py --json file")
    p.add_argument("--target", default="3b", choices=sorted(SHAPES))
    for f in fields(Assumptions):
        flag = "--" + f.name.replace("_", "-")
        p.add_argument(flag, type=type(f.default), default=f.default)
    p.add_argument("--assume-mfu", nargs=2, type=float, metavar=("GEN", "TRAIN"))
    p.add_argument("--peak-tflops", type=float, default=989.0, help="with --assume-mfu")
    args = p.parse_args()
    assumptions = Assumptions(**{f.name: getattr(args, f.name) for f in fields(Assumptions)})
    config, source = paper_config()
    target = SHAPES[args.target]
    shown = 0
    for path in args.measured:
        try:
            results = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            print(f"{path}: no results ({e})")
            continue
        print(f"\n== {path} ==")
        print("\n".join(summary(results)))
        rates = rates_from_results(results)
        if rates is None:
            print("no training or generation rate measured: the token count alone")
        print_projection(config, assumptions, source, target, rates, SHAPES[results["shape"]])
        shown += 1
    if args.assume_mfu:
        gen, train = (mfu * args.peak_tflops * 1e12 for mfu in args.assume_mfu)
        label = f"ASSUMED, not measured: {{:.0%}} of {args.peak_tflops:.0f} TFLOP/s"
        rates = Rates(
            gen, label.format(args.assume_mfu[0]), train, label.format(args.assume_mfu[1])
        )
        print_projection(config, assumptions, source, target, rates)
    elif not shown:
        print_projection(config, assumptions, source, target)


if __name__ == "__main__":
    main()
