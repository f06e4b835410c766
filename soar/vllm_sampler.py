"""Sampling on a vLLM engine in the stage's own process (spec.training.sampler: vllm;
docs/design.md, "Training at GPU scale").

The engine shares the GPU with training. It starts once per process and architecture, from the
model's config with dummy weights, in sleep mode, and each generate call
  1) wakes the engine's weights and copies the torch model's current weights into them (a LoRA
     model: its frozen base, and its adapters saved to files the engine loads under new ids),
  2) wakes the KV cache and forgets cached prefixes (they were computed with the old weights),
  3) generates every request in one call (vLLM schedules and batches them itself),
  4) sleeps at level 2, which frees all of the engine's GPU memory for the backward pass.

What has run: request building, output conversion, the weight names, the adapter files and the
wake/copy/generate/sleep order, on CPU with vLLM 0.33's own classes and a stand-in engine
(tests/integration/test_vllm_sampler.py). What has not: the engine itself, which needs CUDA.
"""

import hashlib
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from peft import PeftModel

from soar.prompts import encode_prompts
from soar.runstate import StageError
from soar.sampler import Sample, prompt_seeds
from soar.trainable import base_model

# vLLM's LoRA slots come in these ranks (vllm.config.lora.MaxLoRARanks); an adapter of rank r
# needs the smallest one >= r.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class EngineShape:
    """What an engine is started for: the architecture, and the LoRA slots its adapters need."""

    config_json: str  # the model config, less its path
    lora_rank: int | None  # a vLLM slot rank, None: no LoRA
    max_loras: int
    gpu_memory: float


StartEngine = Callable[[object, EngineShape], object]  # (transformers config, shape) -> vllm.LLM


@dataclass
class Engine:
    """A started engine and what it has been given: the count of weight copies so far (each
    copy's adapters get fresh LoRA ids, so the engine never serves an adapter's older weights),
    and the folder its adapter files are written to."""

    llm: object
    copies: int = 0
    adapter_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="soar-lora-"))


ENGINES: dict[tuple[StartEngine, EngineShape], Engine] = {}  # one per process and shape


def start_vllm(config, shape: EngineShape):
    """vLLM's LLM in this process (no engine-core subprocess, so weights are copied as tensors,
    not pickled), with dummy weights (every generate copies the real ones) and no tokenizer
    (prompts go in as token ids; completions are decoded by soar)."""
    if not torch.cuda.is_available():
        raise StageError(
            "training.sampler: vllm needs a CUDA GPU and this machine has none; "
            "use 'device' or 'transformers'"
        )
    try:
        from vllm import LLM
    except ImportError as error:
        raise StageError(
            f"training.sampler: vllm needs the vllm package (the worker image has it): {error}"
        ) from error
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    config_dir = tempfile.mkdtemp(prefix="soar-vllm-")
    config.save_pretrained(config_dir)
    lora = {}
    if shape.lora_rank is not None:
        lora = {"enable_lora": True, "max_lora_rank": shape.lora_rank, "max_loras": shape.max_loras}
    return LLM(
        model=config_dir,
        load_format="dummy",
        skip_tokenizer_init=True,
        dtype="bfloat16",
        enable_sleep_mode=True,
        gpu_memory_utilization=shape.gpu_memory,
        logprobs_mode="processed_logprobs",  # the sampled policy's log-probs: with temperature
        **lora,
    )


def engine_shape(model, gpu_memory: float) -> EngineShape:
    """The engine a model needs: its base architecture, and for a PeftModel a slot rank that
    holds its largest adapter and a slot per adapter."""
    config = base_model(model).config.to_dict()
    config.pop("_name_or_path", None)
    rank, count = None, 1
    if isinstance(model, PeftModel):
        largest = max(c.r for c in model.peft_config.values())
        rank = next((r for r in LORA_RANKS if r >= largest), None)
        if rank is None:
            raise StageError(
                f"student.lora.rank {largest} is above vLLM's largest, {LORA_RANKS[-1]}"
            )
        count = len(model.peft_config)
    return EngineShape(str(sorted(config.items())), rank, count, gpu_memory)


def base_weights(model) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's weights under the names of its transformers checkpoint, which vLLM's
    load_weights reads: a PeftModel's base layers without their adapters."""
    if not isinstance(model, PeftModel):
        yield from model.state_dict().items()
        return
    for name, tensor in model.get_base_model().state_dict().items():
        if ".lora_" not in name:
            yield name.replace(".base_layer.", "."), tensor


def save_adapters(model: PeftModel, directory: str) -> dict[str, str]:
    """Each adapter of the model in a folder of its own (adapter_config.json and weights), as
    vLLM loads them: name -> folder. peft writes "default" at the root, others in <root>/<name>."""
    shutil.rmtree(directory, ignore_errors=True)
    model.save_pretrained(directory)
    return {
        name: directory if name == "default" else os.path.join(directory, name)
        for name in model.peft_config
    }


def request_seed(seed: int, occurrence: int) -> int:
    """The seed of the occurrence-th prompt (0, 1, ...) among those given `seed`: a student's
    requests get the same seeds whether or not other students are batched beside it."""
    digest = hashlib.sha256(f"{seed}:{occurrence}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sampling_params(
    seeds: Sequence[int], *, n: int, temperature: float, max_new_tokens: int, eos: int
) -> list:
    """One vllm SamplingParams per prompt: n completions, stopping at the tokenizer's EOS (kept
    in the token ids, as soar's other samplers keep it), the sampled token's log-prob, no
    detokenising in the engine. Greedy requests carry no seed and ask for one completion (vLLM
    refuses n > 1 with temperature 0; VLLMSampler repeats it n times)."""
    from vllm.sampling_params import SamplingParams

    occurrences: Counter[int] = Counter()
    params = []
    for seed in seeds:
        params.append(
            SamplingParams(
                n=n if temperature > 0 else 1,
                temperature=max(temperature, 0.0),
                max_tokens=max_new_tokens,
                seed=request_seed(seed, occurrences[seed]) if temperature > 0 else None,
                stop_token_ids=[eos],
                logprobs=0,
                detokenize=False,
            )
        )
        occurrences[seed] += 1
    return params


def lora_requests(adapters: Sequence[str], paths: dict[str, str], copy: int) -> list:
    """One vllm LoRARequest per prompt for its adapter's files of this weight copy: name and id
    are new for each copy (ids 1, 2, ... in the order of `paths`), so the engine loads them
    afresh instead of serving a cached older copy."""
    from vllm.lora.request import LoRARequest

    ids = {name: copy * len(paths) + k + 1 for k, name in enumerate(paths)}
    requests = {name: LoRARequest(f"{name}@{copy}", ids[name], paths[name]) for name in paths}
    return [requests[name] for name in adapters]


def samples_from(outputs: Sequence, tokenizer) -> list[list[Sample]]:
    """soar's Samples from vllm RequestOutputs, in request order and completion index order:
    token ids as generated (EOS included when it stopped there), each one's log-prob, and
    finished when it stopped on EOS rather than at max_tokens."""
    result = []
    for output in outputs:
        samples = []
        for completion in sorted(output.outputs, key=lambda c: c.index):
            ids = list(completion.token_ids)
            logprobs = [
                position[token].logprob
                for position, token in zip(completion.logprobs, ids, strict=True)
            ]
            text = tokenizer.decode(ids, skip_special_tokens=True)
            finished = completion.finish_reason == "stop"
            samples.append(Sample(text, ids, logprobs, finished=finished))
        result.append(samples)
    return result


class VLLMSampler:
    """The Sampler contract on a vLLM engine: greedy gives the model's argmax tokens; sampled
    draws come from vLLM's per-request generators (seeded from `seed`, not the same stream as
    TransformersSampler's). It takes no batch size: the engine batches by its own memory."""

    def __init__(
        self,
        model,
        tokenizer,
        gpu_memory: float = 0.3,
        start: StartEngine = start_vllm,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.gpu_memory = gpu_memory
        self.start = start
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    def engine(self) -> Engine:
        """This process's engine for the model's shape, started on first use and put to sleep
        (waking an engine that is awake is not something vLLM promises to allow)."""
        key = (self.start, engine_shape(self.model, self.gpu_memory))
        if key not in ENGINES:
            llm = self.start(base_model(self.model).config, key[1])
            llm.sleep(level=2)  # between generate calls the engine always sleeps
            ENGINES[key] = Engine(llm)
        return ENGINES[key]

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_new_tokens: int = 256,
        seed: int | Sequence[int] = 0,
        adapters: Sequence[str] | None = None,
    ) -> list[list[Sample]]:
        seeds = prompt_seeds(prompts, seed, adapters)
        if not prompts:
            return []
        params = sampling_params(
            seeds,
            n=n,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            eos=self.tokenizer.eos_token_id,
        )
        ids = encode_prompts(self.tokenizer, list(prompts))
        engine = self.engine()
        llm = engine.llm
        try:
            # 1) weights: the base, then (LoRA) each adapter's files under this copy's ids
            llm.wake_up(tags=["weights"])
            weights = list(base_weights(self.model))
            llm.apply_model(lambda module: module.load_weights(weights))
            requests = None
            if isinstance(self.model, PeftModel):
                paths = save_adapters(self.model, engine.adapter_dir)
                names = adapters or [self.model.active_adapter] * len(prompts)
                requests = lora_requests(names, paths, engine.copies)
            engine.copies += 1
            # 2) the KV cache, empty of prefixes computed with older weights
            llm.wake_up(tags=["kv_cache"])
            llm.reset_prefix_cache()
            # 3) every request at once
            outputs = llm.generate(
                [{"prompt_token_ids": p} for p in ids],
                params,
                lora_request=requests,
                use_tqdm=False,
            )
        finally:
            # 4) all of the engine's GPU memory back to training, whatever happened
            llm.sleep(level=2)
        groups = samples_from(outputs, self.tokenizer)
        return groups if temperature > 0 else [group * n for group in groups]
