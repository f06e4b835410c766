"""The vLLM sampler (training.sampler: vllm) around its engine, with vLLM 0.33's own request and
output classes (unpacked without the engine's GPU dependencies by `make vllm-classes`).

The engine itself needs CUDA, which no machine here has: StandInLLM stands in for vllm.LLM. It
keeps the contract soar relies on (sleep and wake by tag, no work while asleep, weights loaded
by checkpoint name, LoRA adapters read from each request's files, outputs as vLLM's classes) and
decodes with soar's TransformersSampler over its own copy of the model, which starts from other
(dummy) weights as vLLM's load_format="dummy" does."""

import copy
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from soar import vllm_sampler
from soar.arith import ARITH
from soar.decode import make_sampler
from soar.models import cache_root
from soar.runstate import StageError
from soar.sampler import Rows, TransformersSampler
from soar.spec import Training
from soar.trainable import add_adapters, make_student
from soar.vllm_sampler import (
    VLLMSampler,
    base_weights,
    lora_requests,
    request_seed,
    samples_from,
    sampling_params,
)
from tests.support.models import tiny_llama

WORKER_LOCK = Path(__file__).resolve().parents[2] / "images" / "constraints-worker.txt"
QUESTIONS = ["1+2", "12+3", "345+6789", "9999+1"]
LORA = {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}


@pytest.fixture(scope="module", autouse=True)
def vllm():
    """vLLM's classes, importable during this module's tests only: its folder (make
    vllm-classes) is on sys.path, and its modules are forgotten after. With vllm importable,
    TRL (test_trl_parity) would import vLLM's engine, which cannot import here."""
    version = re.search(r"^vllm==(\S+)$", WORKER_LOCK.read_text(), re.M).group(1)
    folder = cache_root() / "vllm-classes" / version
    if not (folder / ".complete").exists():
        pytest.skip(f"no {folder}: run make vllm-classes")
    sys.path.append(str(folder))
    try:
        from vllm.logprobs import Logprob
        from vllm.outputs import CompletionOutput, RequestOutput
        from vllm.sampling_params import SamplingType

        yield SimpleNamespace(
            Logprob=Logprob,
            CompletionOutput=CompletionOutput,
            RequestOutput=RequestOutput,
            SamplingType=SamplingType,
        )
    finally:
        sys.path.remove(str(folder))
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(str(folder)):
                del sys.modules[name]


class StandInLLM:
    """vllm.LLM's part of the contract, on CPU (see the module docstring). `calls` records what
    soar asked of it, in order."""

    def __init__(self, config, tokenizer, vllm):
        self.vllm = vllm  # its classes
        torch.manual_seed(123)
        self.model = AutoModelForCausalLM.from_config(config).eval()
        self.tokenizer = tokenizer
        self.asleep: set[str] = set()
        self.calls: list[str] = []

    def sleep(self, level: int) -> None:
        assert level == 2
        self.asleep = {"weights", "kv_cache"}
        self.calls.append("sleep")

    def wake_up(self, tags: list[str]) -> None:
        for tag in tags:
            if tag not in self.asleep:
                raise RuntimeError(f"wake_up({tag!r}) on an engine whose {tag} is awake")
            self.asleep.remove(tag)
        self.calls.append("wake " + "+".join(tags))

    def apply_model(self, fn):
        if "weights" in self.asleep:
            raise RuntimeError("apply_model while the weights sleep")
        return [fn(self)]

    def load_weights(self, weights) -> None:  # vLLM's model.load_weights, by checkpoint name
        self.model.load_state_dict(dict(weights), strict=True)
        self.calls.append("load")

    def reset_prefix_cache(self) -> None:
        self.calls.append("reset")

    def generate(self, prompts, params, *, lora_request=None, use_tqdm=True):
        if self.asleep:
            raise RuntimeError(f"generate while {sorted(self.asleep)} sleep")
        self.calls.append("generate")
        model = self.model
        if lora_request is not None:  # each adapter read back from the files of its request
            model = copy.deepcopy(self.model)
            for request in {r.lora_name: r for r in lora_request}.values():
                if isinstance(model, PeftModel):
                    model.load_adapter(request.lora_path, adapter_name=request.lora_name)
                else:
                    model = PeftModel.from_pretrained(
                        model, request.lora_path, adapter_name=request.lora_name
                    )
        sampler = TransformersSampler(model, self.tokenizer)
        outputs = []
        for i, (prompt, p) in enumerate(zip(prompts, params, strict=True)):
            assert p.stop_token_ids == [self.tokenizer.eos_token_id]
            names = None if lora_request is None else [lora_request[i].lora_name] * p.n
            rows = Rows([(torch.Generator().manual_seed(p.seed or 0), torch.arange(p.n))], names)
            samples = sampler._generate_batch(
                [prompt["prompt_token_ids"]] * p.n, p.temperature, p.max_tokens, rows
            )
            completions = [
                self.vllm.CompletionOutput(
                    index=k,
                    text="",  # detokenize=False
                    token_ids=s.token_ids,
                    cumulative_logprob=sum(s.logprobs),
                    logprobs=[
                        {t: self.vllm.Logprob(lp, rank=1)}
                        for t, lp in zip(s.token_ids, s.logprobs, strict=True)
                    ],
                    finish_reason="stop" if s.finished else "length",
                )
                for k, s in enumerate(samples)
            ]
            outputs.append(
                self.vllm.RequestOutput(
                    str(i), None, prompt["prompt_token_ids"], None, completions, True
                )
            )
        return outputs


@pytest.fixture
def engines(monkeypatch, vllm):
    """A fresh engine table, and a start function that gives StandInLLMs (kept in the list)."""
    monkeypatch.setattr(vllm_sampler, "ENGINES", {})
    started = []

    def start(tokenizer):
        def stand_in(config, shape):
            started.append(StandInLLM(config, tokenizer, vllm))
            return started[-1]

        return stand_in

    return start, started


def greedy(sampler, tokenizer, adapters=None):
    prompts = [ARITH.student_prompt(q, tokenizer) for q in QUESTIONS]
    kwargs = {"n": 2, "temperature": 0.0, "max_new_tokens": 24, "seed": 0}
    return sampler.generate(prompts, adapters=adapters, **kwargs)


def assert_same(got, want) -> None:
    for got_group, want_group in zip(got, want, strict=True):
        for sample, expected in zip(got_group, want_group, strict=True):
            assert sample.token_ids == expected.token_ids
            assert (sample.text, sample.finished) == (expected.text, expected.finished)
            assert sample.logprobs == pytest.approx(expected.logprobs, abs=1e-5)


def test_each_prompt_gets_its_students_seed_stream_stop_and_adapter(vllm):
    # Student 7 has two prompts, student 9 one: request seeds count prompts per student seed, so
    # each student's requests are the same alone as batched with the other.
    batched = sampling_params([7, 7, 9], n=4, temperature=0.8, max_new_tokens=12, eos=1)
    alone = sampling_params([7, 7], n=4, temperature=0.8, max_new_tokens=12, eos=1)
    other = sampling_params([9], n=4, temperature=0.8, max_new_tokens=12, eos=1)
    assert [p.seed for p in batched] == [p.seed for p in alone] + [p.seed for p in other]
    assert [p.seed for p in batched] == [request_seed(7, 0), request_seed(7, 1), request_seed(9, 0)]
    assert len({p.seed for p in batched}) == 3
    p = batched[0]
    assert (p.n, p.temperature, p.max_tokens, p.stop_token_ids, p.logprobs) == (4, 0.8, 12, [1], 0)
    assert p.detokenize is False
    [g] = sampling_params([7], n=3, temperature=0.0, max_new_tokens=5, eos=1)
    assert (g.seed, g.n, g.sampling_type) == (None, 1, vllm.SamplingType.GREEDY)

    paths = {"default": "/a", "student-1": "/a/student-1"}
    first = lora_requests(["default", "student-1", "default"], paths, copy=0)
    assert [(r.lora_name, r.lora_int_id, r.lora_path) for r in first] == [
        ("default@0", 1, "/a"),
        ("student-1@0", 2, "/a/student-1"),
        ("default@0", 1, "/a"),
    ]
    # the next weight copy: new names and ids, so the engine cannot serve the older adapter
    second = lora_requests(["student-1"], paths, copy=1)
    assert [(r.lora_name, r.lora_int_id) for r in second] == [("student-1@1", 4)]


def test_outputs_become_samples_in_completion_order(vllm):
    CompletionOutput, Logprob = vllm.CompletionOutput, vllm.Logprob
    _, tokenizer = tiny_llama()
    eos = tokenizer.eos_token_id
    ids = tokenizer("12", add_special_tokens=False)["input_ids"]  # [3, 4]
    stopped = CompletionOutput(
        index=0,
        text="",
        token_ids=[*ids, eos],
        cumulative_logprob=-1.5,
        # each position also lists a likelier token than the one drawn (rank 2)
        logprobs=[{t: Logprob(-0.5, rank=2), 50: Logprob(-0.1, rank=1)} for t in [*ids, eos]],
        finish_reason="stop",
    )
    capped = CompletionOutput(
        index=1,
        text="",
        token_ids=[ids[1]],
        cumulative_logprob=-2.0,
        logprobs=[{ids[1]: Logprob(-2.0, rank=1)}],
        finish_reason="length",
    )
    output = vllm.RequestOutput("0", None, [5, 6], None, [capped, stopped], True)

    [[first, second]] = samples_from([output], tokenizer)
    assert (first.text, first.token_ids, first.logprobs, first.finished) == (
        "12",
        [*ids, eos],
        [-0.5, -0.5, -0.5],
        True,
    )
    assert (second.text, second.token_ids, second.logprobs, second.finished) == (
        "2",
        [ids[1]],
        [-2.0],
        False,
    )


def test_lora_base_weights_carry_the_checkpoint_names():
    plain, _ = tiny_llama()
    expected = {name: t.clone() for name, t in plain.state_dict().items()}
    student = make_student(copy.deepcopy(plain), LORA)
    add_adapters(student, 2)
    weights = dict(base_weights(student))
    assert sorted(weights) == sorted(expected)
    assert all(torch.equal(weights[name], expected[name]) for name in expected)


def test_greedy_through_the_engine_is_transformers_greedy_with_each_calls_weights(engines):
    start, started = engines
    model, tokenizer = tiny_llama()
    sampler = VLLMSampler(model, tokenizer, start=start(tokenizer))
    assert_same(
        greedy(sampler, tokenizer), greedy(TransformersSampler(model, tokenizer), tokenizer)
    )

    # a training step changes the weights: the next call generates with the new ones
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(-3.0)
    expected = greedy(TransformersSampler(model, tokenizer), tokenizer)
    got = greedy(sampler, tokenizer)
    assert_same(got, expected)

    [engine] = started  # one engine for both calls, asleep between them
    cycle = ["wake weights", "load", "wake kv_cache", "reset", "generate", "sleep"]
    assert engine.calls == ["sleep", *cycle, *cycle]


def test_batched_lora_students_through_the_engine(engines):
    start, started = engines
    model, tokenizer = tiny_llama()
    student = make_student(model, LORA)
    names = add_adapters(student, 2)
    with torch.no_grad():  # two trained students: lora_B starts at zero, so move each its own way
        for k, name in enumerate(names):
            for param_name, param in student.named_parameters():
                if f"lora_B.{name}." in param_name:
                    param.copy_(
                        torch.randn(param.shape, generator=torch.Generator().manual_seed(k))
                    )
    adapters = [names[k % 2] for k in range(len(QUESTIONS))]
    student.eval()

    got = greedy(VLLMSampler(student, tokenizer, start=start(tokenizer)), tokenizer, adapters)
    want = greedy(TransformersSampler(student, tokenizer), tokenizer, adapters)
    assert_same(got, want)
    # the students differ: each prompt was generated by its own adapter
    each = {
        name: greedy(TransformersSampler(student, tokenizer), tokenizer, [name] * 4)
        for name in names
    }
    assert any(
        each["default"][i][0].token_ids != each["student-1"][i][0].token_ids for i in range(4)
    )


def test_spec_selects_vllm_and_a_machine_without_cuda_says_so():
    model, tokenizer = tiny_llama()
    sampler = make_sampler(Training(sampler="vllm", vllmGpuMemory=0.45), model, tokenizer)
    assert type(sampler) is VLLMSampler and sampler.gpu_memory == 0.45
    assert not torch.cuda.is_available()  # this test is of machines without CUDA
    with pytest.raises(StageError, match="^training.sampler: vllm needs a CUDA GPU"):
        greedy(sampler, tokenizer)


def test_a_failed_generation_leaves_the_engine_asleep_for_the_next(engines, monkeypatch):
    start, started = engines
    model, tokenizer = tiny_llama()
    sampler = VLLMSampler(model, tokenizer, start=start(tokenizer))
    working = StandInLLM.generate

    def out_of_memory(self, *args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(StandInLLM, "generate", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        greedy(sampler, tokenizer)
    assert started[0].asleep == {"weights", "kv_cache"}
    monkeypatch.setattr(StandInLLM, "generate", working)
    assert_same(
        greedy(sampler, tokenizer), greedy(TransformersSampler(model, tokenizer), tokenizer)
    )
