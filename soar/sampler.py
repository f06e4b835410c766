"""Sampling from a causal LM behind one interface: transformers here, vLLM on GPU later."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class Sample:
    """One completion: text, token ids, and each token's log-prob under the sampling policy."""

    text: str
    token_ids: list[int]
    logprobs: list[float]
    finished: bool


class Sampler(Protocol):
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
    """Batched generation with transformers' generate; prompts are left-padded."""

    def __init__(self, model, tokenizer, batch_size: int = 64):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"

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
        flat = [p for p in prompts for _ in range(n)]
        samples: list[Sample] = []
        was_training = self.model.training
        self.model.eval()
        for start in range(0, len(flat), self.batch_size):
            torch.manual_seed(seed * 1_000_003 + start)
            samples.extend(
                self._generate_batch(
                    flat[start : start + self.batch_size], temperature, max_new_tokens
                )
            )
        self.model.train(was_training)
        return [samples[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _generate_batch(
        self, prompts: list[str], temperature: float, max_new_tokens: int
    ) -> list[Sample]:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {
            k: v.to(self.model.device)
            for k, v in enc.items()
            if k in ("input_ids", "attention_mask")
        }
        greedy = temperature <= 0
        out = self.model.generate(
            **enc,
            do_sample=not greedy,
            temperature=None if greedy else temperature,
            top_k=None if greedy else 0,
            top_p=None,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            return_dict_in_generate=True,
            output_scores=True,
        )
        new = out.sequences[:, enc["input_ids"].shape[1] :]
        scores = torch.stack(out.scores, dim=1).float()  # [batch, steps, vocab], after temperature
        logprobs = torch.log_softmax(scores, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        eos = self.tokenizer.eos_token_id
        result = []
        for row, row_lp in zip(new.tolist(), logprobs.tolist(), strict=True):
            length = row.index(eos) + 1 if eos in row else len(row)
            ids = row[:length]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            result.append(Sample(text, ids, row_lp[:length], finished=eos in row))
        return result
