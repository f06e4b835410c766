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


class Sampler(Protocol):
    tokenizer: object  # prompts are rendered for it (chat template) and encoded with it

    def generate(
        self,
        prompts: Sequence[str],
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_new_tokens: int = 256,
        seed: int = 0,
    ) -> list[list[Sample]]:
        """n samples per prompt (temperature 0 means greedy), deterministic for a given seed."""
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
        seed: int = 0,
    ) -> list[list[Sample]]:
        generator = torch.Generator().manual_seed(seed)
        return in_batches(
            self,
            prompts,
            n,
            lambda ids: self._generate_batch(ids, temperature, max_new_tokens, generator),
        )

    def _generate_batch(
        self,
        prompt_ids: list[list[int]],
        temperature: float,
        max_new_tokens: int,
        generator: torch.Generator,
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
        )
        for step in range(max_new_tokens):
            logits = out.logits[:, -1, :].float().cpu()
            if temperature > 0:
                logp = torch.log_softmax(logits / temperature, dim=-1)
                token = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
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
            )
        return to_samples(self.tokenizer, tokens, logprobs, lengths, finished)


def in_batches(
    sampler,
    prompts: Sequence[str],
    n: int,
    generate_batch: Callable[[list[list[int]]], list[Sample]],
) -> list[list[Sample]]:
    """n samples per prompt, sampler.batch_size rows per call of generate_batch (prompt token
    ids -> one Sample per row), with the model in eval mode; grouped by prompt."""
    flat = [p for p in prompts for _ in range(n)]
    ids = encode_prompts(sampler.tokenizer, flat)
    was_training = sampler.model.training
    sampler.model.eval()
    samples: list[Sample] = []
    for start in range(0, len(flat), sampler.batch_size):
        samples.extend(generate_batch(ids[start : start + sampler.batch_size]))
    sampler.model.train(was_training)
    return [samples[i * n : (i + 1) * n] for i in range(len(prompts))]


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
