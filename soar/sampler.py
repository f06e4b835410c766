"""Sampling from a causal LM behind one interface: transformers here, vLLM on GPU later."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from soar.prompts import encode_prompts


@dataclass
class Sample:
    """One completion: text, token ids, and each token's log-prob under the sampling policy."""

    text: str
    token_ids: list[int]
    logprobs: list[float]
    finished: bool


@dataclass
class Rows:
    """What differs between the rows of one generation batch: the random stream that draws each
    row's tokens (one generator per distinct seed, with the batch rows it draws [r]), and the
    LoRA adapter of a multi-adapter PeftModel that computes each row (None: the model as is)."""

    streams: list[tuple[torch.Generator, torch.Tensor]]
    adapter_names: list[str] | None

    def forward_kwargs(self) -> dict:
        """peft's mixed-adapter batch: `adapter_names`, one per row (eval mode only)."""
        return {} if self.adapter_names is None else {"adapter_names": self.adapter_names}


class Sampler(Protocol):
    tokenizer: object  # prompts are rendered for it (chat template) and encoded with it

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
        """n samples per prompt (temperature 0 means greedy), deterministic for a given seed.

        seed is one for all prompts or one per prompt: prompts that share a seed share a random
        stream, so one student's draws do not depend on the other students batched beside it.
        adapters names the LoRA adapter of each prompt (batched LoRA students)."""
        ...


class TransformersSampler:
    """Batched sampling with a KV cache, written out so each token's log-prob is taken as it is
    drawn: nothing of size [batch, steps, vocab] is kept, and the per-step overhead is one forward.
    Prompts are left-padded; positions come from the attention mask, as in training."""

    def __init__(self, model, tokenizer, batch_size: int = 64):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

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
        return in_batches(
            self,
            prompts,
            n,
            lambda ids, rows: self._generate_batch(ids, temperature, max_new_tokens, rows),
            seed=seed,
            adapters=adapters,
            make_generator=lambda s: torch.Generator().manual_seed(s),
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
        input_ids, attention, positions = left_padded(prompt_ids, pad, device)
        batch = len(prompt_ids)
        tokens = torch.full((batch, max_new_tokens), pad, dtype=torch.long)
        logprobs = torch.zeros((batch, max_new_tokens))
        lengths = torch.full((batch,), max_new_tokens, dtype=torch.long)
        finished = torch.zeros(batch, dtype=torch.bool)
        out = self.model(  # logits of the last position only: [batch, prompt, vocab] is GBs
            input_ids=input_ids,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **rows.forward_kwargs(),
        )
        for step in range(max_new_tokens):
            logits = out.logits[:, -1, :].float().cpu()
            if temperature > 0:
                logp = torch.log_softmax(logits / temperature, dim=-1)
                probs = logp.exp()
                token = torch.empty(batch, dtype=torch.long)
                for generator, index in rows.streams:
                    token[index] = torch.multinomial(probs[index], 1, generator=generator)[:, 0]
            else:
                logp = torch.log_softmax(logits, dim=-1)
                token = logits.argmax(-1)
            token = torch.where(finished, torch.full_like(token, pad), token)
            tokens[:, step] = token
            logprobs[:, step] = logp.gather(-1, token.unsqueeze(-1)).squeeze(-1)
            ended = ~finished & (token == eos)
            lengths[ended] = step + 1
            finished |= ended
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            attention = torch.cat(
                [attention, torch.ones((batch, 1), dtype=torch.long, device=device)], -1
            )
            positions = positions[:, -1:] + 1
            out = self.model(
                input_ids=token.unsqueeze(-1).to(device),
                attention_mask=attention,
                position_ids=positions,
                use_cache=True,
                **next_cache(out),
                **rows.forward_kwargs(),
            )
        return to_samples(self.tokenizer, tokens, logprobs, lengths, finished)


def in_batches(
    sampler,
    prompts: Sequence[str],
    n: int,
    generate_batch: Callable[[list[list[int]], Rows], list[Sample]],
    *,
    seed: int | Sequence[int],
    adapters: Sequence[str] | None,
    make_generator: Callable[[int], torch.Generator],
) -> list[list[Sample]]:
    """n samples per prompt, sampler.batch_size rows per call of generate_batch (prompt token
    ids and their Rows -> one Sample per row), with the model in eval mode; grouped by prompt.
    Each distinct seed gets one generator for the whole call (Sampler.generate)."""
    seeds = prompt_seeds(prompts, seed, adapters)
    flat = [p for p in prompts for _ in range(n)]
    seeds = [s for s in seeds for _ in range(n)]
    names = None if adapters is None else [a for a in adapters for _ in range(n)]
    generators = {s: make_generator(s) for s in dict.fromkeys(seeds)}
    ids = encode_prompts(sampler.tokenizer, flat)
    was_training = sampler.model.training
    sampler.model.eval()
    samples: list[Sample] = []
    for start in range(0, len(flat), sampler.batch_size):
        end = start + sampler.batch_size
        chunk = seeds[start:end]
        streams = [
            (generators[s], torch.tensor([i for i, c in enumerate(chunk) if c == s]))
            for s in dict.fromkeys(chunk)
        ]
        rows = Rows(streams, None if names is None else names[start:end])
        samples.extend(generate_batch(ids[start:end], rows))
    sampler.model.train(was_training)
    return [samples[i * n : (i + 1) * n] for i in range(len(prompts))]


def prompt_seeds(
    prompts: Sequence[str], seed: int | Sequence[int], adapters: Sequence[str] | None
) -> list[int]:
    """Sampler.generate's seed as one per prompt, after checking that a per-prompt seed or
    adapter list has one value per prompt."""
    seeds = [seed] * len(prompts) if isinstance(seed, int) else list(seed)
    for name, values in (("seed", seeds), ("adapters", adapters)):
        if values is not None and len(values) != len(prompts):
            raise ValueError(f"{len(values)} values of {name} for {len(prompts)} prompts")
    return seeds


def left_padded(
    prompt_ids: list[list[int]], pad: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids, attention mask and position ids [B, W] of left-padded prompts; positions come
    from the mask, as in training (soar.rloo.completion_logprobs)."""
    batch, width = len(prompt_ids), max(len(p) for p in prompt_ids)
    input_ids = torch.full((batch, width), pad, dtype=torch.long)
    attention = torch.zeros((batch, width), dtype=torch.long)
    for row, p in enumerate(prompt_ids):
        input_ids[row, width - len(p) :] = torch.tensor(p)
        attention[row, width - len(p) :] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    return input_ids, attention, (attention.cumsum(-1) - 1).clamp(min=0)


def to_samples(
    tokenizer,
    tokens: torch.Tensor,
    logprobs: torch.Tensor,
    lengths: torch.Tensor,
    finished: torch.Tensor,
) -> list[Sample]:
    """One Sample per row of host tensors: tokens and logprobs [B, N], lengths and finished [B];
    a row keeps its first `length` tokens (up to and with its EOS)."""
    result = []
    for row in range(tokens.shape[0]):
        length = int(lengths[row])
        ids = tokens[row, :length].tolist()
        text = tokenizer.decode(ids, skip_special_tokens=True)
        done = bool(finished[row])
        result.append(Sample(text, ids, logprobs[row, :length].tolist(), finished=done))
    return result


def next_cache(out) -> dict:
    """The KV cache of a forward's output as the next forward's keyword argument: transformers
    5.24 calls it `cache`; 5.20-5.23 (what vLLM admits, so the worker image) `past_key_values`."""
    cache = getattr(out, "cache", None)
    return {"cache": cache} if cache is not None else {"past_key_values": out.past_key_values}
