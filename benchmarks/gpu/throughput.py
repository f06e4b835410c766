"""Generation and training throughput, MFU and peak memory of a random Llama on one CUDA GPU.

Six phases, each with its own models (so its peak memory is its own), in this order:

    train     (b) the students' RLOO loss, forward + backward + the KL reference's forward, as
                  `soar.rloo.accumulate_gradients` runs it: float32 master weights, bf16 autocast,
                  micro-batched; then clipping and the AdamW step. Tokens/s, FLOP/s, MFU.
    generate  (a) decode tokens/s at batch B: today's loop (soar.sampler.TransformersSampler)
                  and, if importable, soar.decode.DeviceSampler, and the ratio between them.
    teacher   (d) one teacher update (soar.teacher.teacher_step) over g x n rollouts.
    inner     (d) one student inner loop (soar.student.train_rloo): sampling, rewards, RLOO.
    vllm      (a) soar.vllm_sampler.VLLMSampler, where vLLM imports (the worker image).
    compiled  (a) DeviceSampler(compile=True), CUDA graphs; last, as its compile time is unknown.

Then the projected GPU-hours of one outer step of the paper config (projection.py). Shapes and
the FLOPs formulas are in shapes.py; README.md beside this file says what each number means.

    python benchmarks/gpu/throughput.py --model 1b [--json results.json]
    python benchmarks/gpu/throughput.py --cpu-smoke     # tiny sizes on the CPU, seconds
"""

import argparse
import gc
import inspect
import json
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import transformers

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]  # shapes.py and projection.py; soar

from projection import Assumptions, paper_config, print_projection, rates_from_results  # noqa: E402
from shapes import SHAPES, Shape, describe  # noqa: E402

from soar.arith import ARITH  # noqa: E402
from soar.prompts import encode_prompts  # noqa: E402
from soar.rloo import accumulate_gradients  # noqa: E402
from soar.sampler import TransformersSampler  # noqa: E402
from soar.spec import Training  # noqa: E402
from soar.student import train_rloo  # noqa: E402
from soar.teacher import make_optimizer, teacher_step  # noqa: E402
from soar.tinymodel import build_tokenizer  # noqa: E402
from soar.trainable import frozen_copy  # noqa: E402

LR, KL_COEF, MAX_GRAD_NORM = 1e-5, 0.001, 1.0  # the paper's, for students and teacher
COMPUTE = torch.bfloat16  # spec.model.dtype of the paper config
MICRO_BATCH = {"135m": 16, "1b": 8, "3b": 4, "tiny": 2}  # rollouts per forward that fit 80 GB
# Dense bf16 tensor TFLOP/s by device name (NVIDIA datasheets); first match wins.
PEAK_BF16_TFLOPS = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM: "NVIDIA H100 80GB HBM3"
    ("H200", 989.0),
    ("A100", 312.0),
]


@dataclass(frozen=True)
class Sizes:
    """What each phase runs. The defaults are meant to fit both shapes into the ~8 minutes that
    run_all.sh gives them on one H100 (an estimate: not yet run on a GPU)."""

    gen_batch: int = 256  # rows decoded at once: the inner loop's 8 questions x 32
    gen_new_tokens: int = 128  # both samplers; today's loop spends ~0.1 s a token on the CPU
    gen_long_tokens: int = 1024  # the device sampler again at the student's max_new_tokens
    gen_long_budget_s: float = 60.0  # ... if its short run predicts it fits in this
    train_rollouts: int = 64
    train_completion: int = 1024  # student maxNewTokens
    train_steps: int = 3  # timed, after one warm-up step
    micro_batch: int = 0  # 0: MICRO_BATCH of the shape
    teacher_rollouts: int = 256  # g x n
    teacher_completion: int = 512  # teacher maxNewTokens
    inner_questions: int = 8  # the paper's batch: 8 questions x 32 rollouts
    inner_group: int = 32
    inner_new_tokens: int = 256  # the paper's 1024, scaled to the time budget
    inner_steps: int = 2  # the paper's 10-20, scaled likewise


SMOKE = Sizes(
    gen_batch=4,
    gen_new_tokens=6,
    gen_long_tokens=12,
    train_rollouts=4,
    train_completion=12,
    train_steps=1,
    teacher_rollouts=8,
    teacher_completion=8,
    inner_questions=2,
    inner_group=2,
    inner_new_tokens=6,
    inner_steps=1,
)


@dataclass(frozen=True)
class Bench:
    """What every phase needs: the shape, the tokenizer, the sizes, the device and its peak."""

    shape: Shape
    tokenizer: object
    sizes: Sizes
    device: str
    peak: float | None  # dense bf16 TFLOP/s, for MFU
    inner_sampler: str = "auto"  # the inner loop's: auto (device if importable), transformers


def peak_tflops(device_name: str, override: float | None) -> float | None:
    """The device's dense bf16 peak, for MFU; None if unknown and not given."""
    if override:
        return override
    return next((v for key, v in PEAK_BF16_TFLOPS if key in device_name), None)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def rate(flops: float, seconds: float, peak: float | None) -> dict:
    """FLOP/s and MFU (achieved / peak) of `flops` done in `seconds`."""
    achieved = flops / seconds
    return {"flops_per_s": achieved, "mfu": achieved / (peak * 1e12) if peak else None}


def random_completions(shape: Shape, rows: int, length: int, seed: int) -> list[list[int]]:
    """rows x [length] ids from the model's vocabulary, none of them pad (0) or EOS (1)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, shape.vocab, (rows, length), generator=g).tolist()


# (b) Training -------------------------------------------------------------------------------


def measure_training(b: Bench) -> dict:
    """Tokens/s, FLOP/s and MFU of the students' RLOO training step on fixed rollouts."""
    s = b.sizes
    # 1. Policy in float32 master weights, its frozen copy as the KL reference (train_rloo's).
    policy = b.shape.build(b.device, torch.float32).train()
    ref = frozen_copy(policy)
    optimizer = make_optimizer(policy, LR)
    # 2. R rollouts: the arith student prompt [p] + random completions [T].
    prompt = encode_prompts(b.tokenizer, [ARITH.student_prompt("12+34")])[0]
    rows, length = s.train_rollouts, s.train_completion
    completions = random_completions(b.shape, rows, length, seed=1)
    advantages = torch.randn(rows, generator=torch.Generator().manual_seed(2))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        accumulate_gradients(
            policy, ref, [prompt] * rows, completions, advantages,
            pad_id=b.tokenizer.pad_token_id, temperature=1.0, kl_coef=KL_COEF,
            normalisation="token", micro_batch=s.micro_batch, compute_dtype=COMPUTE,
        )  # fmt: skip
        torch.nn.utils.clip_grad_norm_(policy.parameters(), MAX_GRAD_NORM)
        optimizer.step()

    # 3. One warm-up step (kernels, allocator, AdamW state), then the timed steps.
    step()
    sync(b.device)
    started = time.perf_counter()
    for _ in range(s.train_steps):
        step()
    sync(b.device)
    seconds = (time.perf_counter() - started) / s.train_steps
    # 4. FLOPs: every position of [p + T], forward+backward plus the reference's forward.
    out = {
        "rollouts": rows,
        "prompt": len(prompt),
        "completion": length,
        "micro_batch": s.micro_batch,
        "seconds_per_step": seconds,
        "trained_tokens_per_s": rows * length / seconds,  # completion tokens
        "positions_per_s": rows * (len(prompt) + length) / seconds,  # prompt + completion
        **rate(rollout_train_flops(b.shape, rows, len(prompt), length), seconds, b.peak),
    }
    print(
        f"[train] {rows} x ({len(prompt)} + {length}) tokens, micro-batch {s.micro_batch}: "
        f"{seconds:.2f} s/step, {out['trained_tokens_per_s']:,.0f} trained tokens/s, "
        f"{out['flops_per_s'] / 1e12:.1f} TFLOP/s, MFU {fmt_mfu(out['mfu'])}"
    )
    return out


def rollout_train_flops(shape: Shape, rows: int, prompt: int, completion: int) -> float:
    """rows sequences of prompt + completion: forward+backward, and the KL reference's forward."""
    sequence = prompt + completion
    return rows * sequence * (shape.train_flops(sequence) + shape.forward_flops(sequence))


# (a) Generation -----------------------------------------------------------------------------


def device_sampler_class() -> tuple[type | None, str]:
    """soar.decode.DeviceSampler if it imports, else None and why."""
    try:
        from soar.decode import DeviceSampler
    except Exception as e:  # missing, or being written: report it and measure the rest
        return None, f"not available ({type(e).__name__}: {e})"
    return DeviceSampler, "soar.decode.DeviceSampler"


def time_sampler(
    b: Bench, sampler, name: str, prompts: list[str], n: int, new_tokens: int, warmup: int = 2
) -> dict:
    """Decode tokens/s of one generate() of len(prompts) x n rows after a `warmup`-token run of
    the same batch; FLOPs at the mean context a decoded token sees."""
    sampler.generate(prompts, n=n, temperature=1.0, max_new_tokens=warmup, seed=0)
    sync(b.device)
    started = time.perf_counter()
    groups = sampler.generate(prompts, n=n, temperature=1.0, max_new_tokens=new_tokens, seed=1)
    sync(b.device)
    seconds = time.perf_counter() - started
    lengths = [len(sample.token_ids) for group in groups for sample in group]  # [B]
    tokens = sum(lengths)
    prompt = sum(len(ids) for ids in encode_prompts(b.tokenizer, prompts)) / len(prompts)
    context = prompt + (tokens / len(lengths) + 1) / 2
    out = {
        "sampler": name,
        "batch": len(lengths),
        "new_tokens": new_tokens,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "mean_context": context,
        **rate(tokens * b.shape.forward_flops(context), seconds, b.peak),
    }
    print(
        f"[generate] {name}: {len(lengths)} rows x {new_tokens} new tokens: {seconds:.1f} s, "
        f"{out['tokens_per_s']:,.0f} tokens/s (model FLOPs utilisation {fmt_mfu(out['mfu'])})"
    )
    return out


def measure_generation(b: Bench) -> dict:
    """Today's decode loop and the device sampler at the same batch and length."""
    s = b.sizes
    # 1. bf16 weights: teacher-generate, baseline and evaluate load the model in spec.model.dtype.
    model = b.shape.build(b.device, COMPUTE).eval()
    questions = min(8, s.gen_batch)  # B = 8 questions x 32 samples, as an inner step
    prompts = [ARITH.student_prompt(f"{i}+{2 * i}") for i in range(questions)]
    n = s.gen_batch // questions
    # 2. Today's loop: one forward per token, log-softmax and sampling on the CPU.
    old = TransformersSampler(model, b.tokenizer, batch_size=s.gen_batch)
    out = {"transformers_sampler": time_sampler(b, old, "TransformersSampler", prompts, n,
                                                s.gen_new_tokens)}  # fmt: skip
    # 3. The device sampler at the same batch and length, then at the student's full length
    # if the first run predicts that fits the budget. Its failure is recorded, not raised.
    cls, why = device_sampler_class()
    if cls is None:
        print(f"[generate] DeviceSampler: {why}")
        out["device_sampler"] = {"error": why}
        return out
    try:
        new = cls(model, b.tokenizer, batch_size=s.gen_batch)
        fast = time_sampler(b, new, "DeviceSampler", prompts, n, s.gen_new_tokens)
        out["device_sampler"] = fast
        out["ratio"] = fast["tokens_per_s"] / out["transformers_sampler"]["tokens_per_s"]
        print(f"[generate] DeviceSampler / TransformersSampler: {out['ratio']:.1f}x (goal >= 10)")
        predicted = s.gen_batch * s.gen_long_tokens / fast["tokens_per_s"]
        if not s.gen_long_tokens or predicted > s.gen_long_budget_s:
            print(f"[generate] {s.gen_long_tokens} tokens skipped: ~{predicted:.0f} s predicted")
            return out
        long = time_sampler(b, new, "DeviceSampler", prompts, n, s.gen_long_tokens)
        out["device_sampler_long"] = long
    except Exception as e:
        traceback.print_exc()
        out["device_sampler_error"] = f"{type(e).__name__}: {e}"[:300]
        print(f"[generate] DeviceSampler FAILED: {out['device_sampler_error']}")
    return out


def measure_generation_compiled(b: Bench) -> dict:
    """DeviceSampler(compile=True): the decode step as CUDA graphs (torch.compile,
    reduce-overhead). Each length is run twice, since a new length is a new cache shape and so a
    new compilation; the first run's seconds (compilation included) are reported too."""
    s = b.sizes
    cls, why = device_sampler_class()
    if cls is None or "compile" not in inspect.signature(cls).parameters or b.device != "cuda":
        reason = why if cls is None else "needs CUDA and DeviceSampler(compile=...)"
        print(f"[compiled] skipped: {reason}")
        return {"skipped": reason}
    # 1. The same bf16 model and batch as the generate phase.
    model = b.shape.build(b.device, COMPUTE).eval()
    questions = min(8, s.gen_batch)
    prompts = [ARITH.student_prompt(f"{i}+{2 * i}") for i in range(questions)]
    n = s.gen_batch // questions
    sampler = cls(model, b.tokenizer, batch_size=s.gen_batch, compile=True)
    # 2. The short length (compare with the generate phase), then the full one if it fits.
    started = time.perf_counter()
    out = {"device_sampler_compiled": time_sampler(b, sampler, "DeviceSampler(compile)",
                                                   prompts, n, s.gen_new_tokens,
                                                   warmup=s.gen_new_tokens)}  # fmt: skip
    out["first_run_seconds"] = (
        time.perf_counter() - started - out["device_sampler_compiled"]["seconds"]
    )
    rate_short = out["device_sampler_compiled"]["tokens_per_s"]
    predicted = 2 * s.gen_batch * s.gen_long_tokens / rate_short
    if s.gen_long_tokens and predicted <= s.gen_long_budget_s:
        out["device_sampler_compiled_long"] = time_sampler(
            b, sampler, "DeviceSampler(compile)", prompts, n, s.gen_long_tokens,
            warmup=s.gen_long_tokens,
        )  # fmt: skip
    else:
        print(f"[compiled] {s.gen_long_tokens} tokens skipped: ~{predicted:.0f} s predicted")
    return out


def measure_generation_vllm(b: Bench) -> dict:
    """soar.vllm_sampler.VLLMSampler (training.sampler: vllm) at the generate phase's batch and
    length, each call with its weight copy and sleep/wake. Only where vLLM imports with CUDA:
    the worker image, not the lent device machine (no vLLM there)."""
    s = b.sizes
    try:
        import vllm  # noqa: F401

        from soar.vllm_sampler import VLLMSampler
    except Exception as e:
        print(f"[vllm] skipped: vllm does not import ({type(e).__name__}: {e})"[:300])
        return {"skipped": f"vllm does not import: {type(e).__name__}"}
    model = b.shape.build(b.device, COMPUTE).eval()
    questions = min(8, s.gen_batch)
    prompts = [ARITH.student_prompt(f"{i}+{2 * i}") for i in range(questions)]
    sampler = VLLMSampler(model, b.tokenizer)
    return {"vllm_sampler": time_sampler(b, sampler, "VLLMSampler", prompts,
                                         s.gen_batch // questions, s.gen_new_tokens)}  # fmt: skip


# (d) One teacher update and one student inner loop ------------------------------------------


def measure_teacher_step(b: Bench) -> dict:
    """One teacher_step over g x n rollouts of teacher_completion tokens, 4 datasets' A_k."""
    s = b.sizes
    # 1. Policy in float32 master weights; the KL reference (the base model) in bf16, as
    # stages/teacher.py loads them. Same seed, so the reference starts equal to the policy.
    policy = b.shape.build(b.device, torch.float32)
    ref = b.shape.build(b.device, COMPUTE).eval().requires_grad_(False)
    prompt = encode_prompts(b.tokenizer, [ARITH.teacher_prompt])[0]
    rows, length = s.teacher_rollouts, s.teacher_completion
    completions = random_completions(b.shape, rows, length, seed=3)
    advantages = [0.1 * (i * 4 // rows - 1.5) for i in range(rows)]  # A_k of 4 datasets
    # 2. One update, timed as the stage runs it (fresh AdamW state, as after a load).
    sync(b.device)
    started = time.perf_counter()
    stats = teacher_step(
        policy, ref, prompt, completions, advantages,
        optimizer=make_optimizer(policy, LR), lr=LR, kl_coef=KL_COEF,
        max_grad_norm=MAX_GRAD_NORM, normalisation="token", pad_id=b.tokenizer.pad_token_id,
        temperature=1.0, micro_batch=s.micro_batch, compute_dtype=COMPUTE,
    )  # fmt: skip
    sync(b.device)
    seconds = time.perf_counter() - started
    out = {
        "rollouts": rows,
        "completion": length,
        "seconds": seconds,
        "trained_tokens_per_s": rows * length / seconds,
        "loss": stats["loss"],
        **rate(rollout_train_flops(b.shape, rows, len(prompt), length), seconds, b.peak),
    }
    print(
        f"[teacher] one update over {rows} x {length} tokens: {seconds:.2f} s, "
        f"{out['trained_tokens_per_s']:,.0f} trained tokens/s, MFU {fmt_mfu(out['mfu'])}"
    )
    return out


def measure_inner_loop(b: Bench) -> dict:
    """One train_rloo call as a student stage makes it. The sampler (spec.training.sampler):
    "auto" tries the device sampler and, if it fails, records why and runs today's loop."""
    kinds = {"auto": ["device", "transformers"], "device": ["device"]}
    out: dict = {}
    for kind in kinds.get(b.inner_sampler, ["transformers"]):
        try:
            return out | inner_loop(b, kind)
        except Exception as e:
            if kind == "transformers" or b.inner_sampler == "device":
                raise
            traceback.print_exc()
            out["device_error"] = f"{type(e).__name__}: {e}"[:300]
            print(f"[inner] with DeviceSampler FAILED ({out['device_error']}); again with today's")
            gc.collect()
    return out


def inner_loop(b: Bench, kind: str) -> dict:
    """train_rloo for sizes.inner_steps steps with sampler `kind` ("device", "transformers")."""
    s = b.sizes
    # 1. A student in float32 master weights; made-up rewards (the text is of random ids).
    policy = b.shape.build(b.device, torch.float32)
    questions = [{"question": f"{i}+{i}", "answer": str(2 * i)} for i in range(64)]
    rollouts = s.inner_questions * s.inner_group
    # 2. The loop: per step, sample rollouts x new_tokens, reward, RLOO forward+backward, AdamW.
    sync(b.device)
    started = time.perf_counter()
    stats = train_rloo(
        policy, b.tokenizer, questions, domain=ARITH,
        reward_fn=lambda completions, refs: [float(len(c) % 7) for c in completions],
        steps=s.inner_steps, batch_questions=s.inner_questions, group_size=s.inner_group,
        max_new_tokens=s.inner_new_tokens, temperature=1.0, lr=LR, kl_coef=KL_COEF,
        max_grad_norm=MAX_GRAD_NORM, seed=0, sampler_batch_size=rollouts,
        sampling=Training(sampler=kind), micro_batch=s.micro_batch, compute_dtype=COMPUTE,
    )  # fmt: skip
    sync(b.device)
    seconds = time.perf_counter() - started
    tokens = sum(step["completion_tokens"] * rollouts for step in stats)
    name = {"device": "DeviceSampler", "transformers": "TransformersSampler"}[kind]
    out = {
        "sampler": name,
        "steps": s.inner_steps,
        "rollouts": rollouts,
        "new_tokens": s.inner_new_tokens,
        "seconds": seconds,
        "seconds_per_step": [step["seconds"] for step in stats],
        "tokens_per_s": tokens / seconds,  # each token generated once and trained once
    }
    print(
        f"[inner] {s.inner_steps} RLOO steps of {s.inner_questions} x {s.inner_group} rollouts x "
        f"{s.inner_new_tokens} tokens with {name}: {seconds:.1f} s "
        f"({', '.join(f'{x:.1f}' for x in out['seconds_per_step'])} s/step), "
        f"{out['tokens_per_s']:,.0f} generated+trained tokens/s"
    )
    return out


# Driver ---------------------------------------------------------------------------------------

PHASES: dict[str, Callable[[Bench], dict]] = {
    "train": measure_training,
    "generate": measure_generation,
    "teacher": measure_teacher_step,
    "inner": measure_inner_loop,
    "vllm": measure_generation_vllm,
    "compiled": measure_generation_compiled,  # last: its compilation time is unknown
}


def fmt_mfu(mfu: float | None) -> str:
    return "n/a (unknown peak: --peak-tflops)" if mfu is None else f"{mfu:.1%}"


@contextmanager
def phase(name: str, results: dict, device: str, json_path: str | None) -> Iterator[dict]:
    """Run one phase: its peak memory, its failure (printed, recorded; the next phase still
    runs), and the results file rewritten after it, so a run cut short keeps what it measured."""
    entry: dict = {}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        yield entry
    except Exception as e:  # out of memory included: report it, measure the rest
        traceback.print_exc()
        entry["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        print(f"[{name}] FAILED: {entry['error']}")
    entry["phase_seconds"] = time.perf_counter() - started
    if device == "cuda":
        entry["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        print(f"[{name}] peak GPU memory {entry['peak_memory_gib']:.1f} GiB")
    results["phases"][name] = entry
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=1))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=sorted(SHAPES), default="1b")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU, seconds")
    p.add_argument("--peak-tflops", type=float, help="dense bf16 peak for MFU (default: table)")
    p.add_argument("--phases", default=",".join(PHASES), help="comma-separated, in this order")
    p.add_argument("--json", help="write the results here (after every phase)")
    p.add_argument("--inner-sampler", choices=["auto", "device", "transformers"], default="auto")
    for f in fields(Sizes):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=None)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    # 1. Device: CUDA, or the CPU only for the smoke test.
    if not args.cpu_smoke and not torch.cuda.is_available():
        sys.exit("throughput.py needs a CUDA GPU; --cpu-smoke checks the script on tiny sizes")
    device = "cpu" if args.cpu_smoke else "cuda"
    shape = SHAPES["tiny" if args.cpu_smoke else args.model]
    sizes = SMOKE if args.cpu_smoke else Sizes()
    overrides = {f.name: getattr(args, f.name) for f in fields(Sizes)}
    sizes = replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
    if not sizes.micro_batch:
        sizes = replace(sizes, micro_batch=MICRO_BATCH[shape.name])
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke test)"
    peak = peak_tflops(name, args.peak_tflops)
    print(f"{name}; torch {torch.__version__}, transformers {transformers.__version__}")
    print(describe(shape) + f"; peak bf16 {peak or '?'} TFLOP/s")
    bench = Bench(shape, build_tokenizer(), sizes, device, peak, args.inner_sampler)
    results = {
        "shape": shape.name,
        "device": name,
        "torch": torch.__version__,
        "peak_tflops": peak,
        "params": shape.params(),
        "sizes": asdict(sizes),
        "phases": {},
    }
    # 2. The phases, each with its own models.
    wanted = [p for p in args.phases.split(",") if p]
    for key in wanted:
        if key not in PHASES:
            sys.exit(f"--phases: unknown phase {key!r}; choose from {', '.join(PHASES)}")
        with phase(key, results, device, args.json) as entry:
            entry.update(PHASES[key](bench))
    # 3. The projection of one outer step of the paper config, from these rates.
    config, source = paper_config()
    print()
    print_projection(
        config, Assumptions(), source, SHAPES["3b"], rates_from_results(results), shape
    )
    if any("error" in entry for entry in results["phases"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
