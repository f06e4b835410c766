"""Sampling that stays on the model's device, and the choice between it and TransformersSampler
(spec.training.sampler; docs/design.md, "Training at GPU scale").

TransformersSampler moves every step's logits to the host and asks the device whether all rows
have finished, so a GPU waits on Python once per token. DeviceSampler keeps tokens, log-probs and
the finished flags in device tensors, draws on a device generator, looks at the finished flags
only every CHECK_EVERY steps and copies its results to the host once per batch.
"""

from collections.abc import Sequence

import torch
from transformers import StaticCache

from soar.sampler import (
    Rows,
    Sample,
    Sampler,
    TransformersSampler,
    in_batches,
    left_padded,
    to_samples,
)
from soar.spec import Training
from soar.vllm_sampler import VLLMSampler

# Decode steps between two "have all rows finished?" checks. Each check copies a flag to the host,
# which waits for every queued kernel; checking every 16 steps makes that wait 16x rarer and costs
# at most 15 extra steps per batch, which only produce pad.
CHECK_EVERY = 16


class StaticKVCache(StaticCache):
    """A StaticCache that stores keys in the values' dtype. Under bf16 autocast over float32
    weights (train_rloo), RoPE returns float32 keys beside bfloat16 values, and StaticCache
    allocates both in the keys' dtype, so it cannot take the values; attention casts keys to
    bfloat16 anyway, so storing them in bfloat16 changes no result."""

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys = key_states.to(value_states.dtype)
        return super().update(keys, value_states, layer_idx, *args, **kwargs)


class DeviceSampler:
    """The contract and results of TransformersSampler (greedy: the same tokens), with the decode
    loop on the device: a static KV cache sized prompt width + max_new_tokens, a constant
    attention mask, device-side sampling, no host sync but every CHECK_EVERY steps.

    Written for transformers 5.20 (the worker image's pin): its StaticCache keeps its own write
    position (no cache_position argument) and its forward takes the cache as `past_key_values`
    (5.24 calls it `cache`, see soar.sampler.next_cache; not run here on 5.24).

    compile=True (CUDA only) runs the one-token decode step through torch.compile with
    mode="reduce-overhead" (CUDA graphs); the prefill stays eager. It has not been run: this
    project's tests have no GPU.
    """

    def __init__(self, model, tokenizer, batch_size: int = 64, compile: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if compile and model.device.type != "cuda":
            raise ValueError("DeviceSampler(compile=True) needs a model on a CUDA device")
        self._decode = torch.compile(self._forward, mode="reduce-overhead") if compile else None
        self._cache: tuple[tuple, StaticKVCache] | None = None

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
        device = self.model.device
        return in_batches(
            self,
            prompts,
            n,
            lambda ids, rows: self._generate_batch(ids, temperature, max_new_tokens, rows),
            seed=seed,
            adapters=adapters,
            make_generator=lambda s: torch.Generator(device=device).manual_seed(s),
        )

    def _generate_batch(
        self,
        prompt_ids: list[list[int]],
        temperature: float,
        max_new_tokens: int,
        rows: Rows,
    ) -> list[Sample]:
        device = self.model.device
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        input_ids, attention, positions = left_padded(prompt_ids, pad, device)  # [B, W] each
        batch, width = input_ids.shape
        # Ones over the generated slots from the start: causality hides a slot until it is
        # written, and every decode step gets the same mask tensor.
        mask = torch.cat([attention, attention.new_ones(batch, max_new_tokens)], -1)  # [B, W+N]
        cache = self._static_cache(batch, width + max_new_tokens)
        tokens = torch.full((batch, max_new_tokens), pad, dtype=torch.long, device=device)  # [B, N]
        logprobs = torch.zeros((batch, max_new_tokens), device=device)  # [B, N]
        lengths = torch.full((batch,), max_new_tokens, dtype=torch.long, device=device)  # [B]
        finished = torch.zeros(batch, dtype=torch.bool, device=device)  # [B]
        streams = [(generator, index.to(device)) for generator, index in rows.streams]
        adapters = rows.forward_kwargs()

        # 1) prefill: the prompts fill the cache; logits of their last position
        logits = self._forward(input_ids, mask, positions, cache, adapters)  # [B, V]
        position = positions[:, -1:]  # [B, 1]
        for step in range(max_new_tokens):
            # 2) draw one token per row on the device; a finished row gets pad
            token, logp = draw(logits, temperature, streams)  # [B], [B, V]
            token = torch.where(finished, pad, token)
            # 3) record its log-prob under the sampling policy, and which rows just ended
            tokens[:, step] = token
            logprobs[:, step] = logp.gather(-1, token[:, None]).squeeze(-1)
            ended = ~finished & (token == eos)
            lengths = torch.where(ended, step + 1, lengths)
            finished |= ended
            # 4) stop at the last step, or when all rows have finished (looked at rarely)
            if step == max_new_tokens - 1 or (
                (step + 1) % CHECK_EVERY == 0 and bool(finished.all())
            ):
                break
            # 5) decode: the drawn tokens go through the model, one position further
            position = position + 1
            decode = self._decode or self._forward
            logits = decode(token[:, None], mask, position, cache, adapters)

        # 6) one copy to the host
        host = [t.cpu() for t in (tokens, logprobs, lengths, finished)]
        return to_samples(self.tokenizer, *host)

    def _forward(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: StaticKVCache,
        adapters: dict,
    ) -> torch.Tensor:
        """Logits [B, V] at the last of input_ids' positions; the cache takes their keys and
        values at its own write position. adapters: Rows.forward_kwargs."""
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
            **adapters,
        )
        return out.logits[:, -1, :].float()

    def _static_cache(self, batch: int, length: int) -> StaticKVCache:
        """An empty static cache of this size. The last one is reused (cleared) while its size
        and compute dtype hold, so a compiled step keeps one cache object and replays its graph;
        autocast decides the dtype the cache's tensors were allocated in."""
        kind = self.model.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
        key = (batch, length, dtype)
        if self._cache is not None and self._cache[0] == key:
            self._cache[1].reset()
        else:
            self._cache = key, StaticKVCache(config=self.model.config, max_cache_len=length)
        return self._cache[1]


def draw(
    logits: torch.Tensor,
    temperature: float,
    streams: list[tuple[torch.Generator, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens [B] from logits [B, V] and the log-probs [B, V] of the policy they were drawn from:
    log_softmax(logits / temperature), or for temperature 0 the argmax and log_softmax(logits).
    streams: Rows.streams (each generator draws the noise of its rows).

    Gumbel-max: argmax(logp + g), g = -log(-log(u)), u uniform, picks token i with probability
    exactly softmax(logp)_i, with no host sync (torch.multinomial checks its input on the host).
    u is float64: float32's 2^-24 grid would cap g near 16.6, so a token more than ~19 nats
    below the best could never be drawn; float64's grid caps g near 36.7."""
    if temperature <= 0:
        return logits.argmax(-1), torch.log_softmax(logits, dim=-1)
    logp = torch.log_softmax(logits / temperature, dim=-1)
    u = torch.empty(logp.shape, dtype=torch.float64, device=logp.device)  # [B, V]
    for generator, index in streams:
        shape = (len(index), logp.shape[-1])
        u[index] = torch.rand(shape, dtype=torch.float64, device=logp.device, generator=generator)
    return (logp - torch.log(-torch.log(u))).argmax(-1), logp


def make_sampler(training: Training, model, tokenizer, batch_size: int = 64) -> Sampler:
    """The sampler spec.training.sampler names, for this model."""
    if training.sampler == "vllm":
        return VLLMSampler(model, tokenizer, gpu_memory=training.vllmGpuMemory)
    samplers = {"transformers": TransformersSampler, "device": DeviceSampler}
    return samplers[training.sampler](model, tokenizer, batch_size=batch_size)
