"""RLOO pieces shared by the student inner loop and the teacher update.

One on-policy step per batch, as in the paper: sample, score, one optimizer step. So the PPO
importance ratio is exactly 1 and TRL's clipping never binds; the ratio is kept in the surrogate
only so that its value and gradient are those of TRL's objective.

What TRL 1.16's ``RLOOTrainer`` does, and what we do:

- Advantages: leave-one-out baseline within each prompt's group, ``A_i = r_i - mean_{j!=i} r_j``,
  no normalisation by default (``normalize_advantages=False``). Same here.
- KL: TRL puts it in the *reward*: ``r_i - beta * sum_t (log pi_old - log pi_ref)`` (first-order
  k1 estimate summed over the sequence, no gradient) before the leave-one-out baseline; ``beta``
  defaults to 0.05. We default to the *loss*: ``kl_coef`` times the k3 estimate
  ``exp(ref - logp) - (ref - logp) - 1`` per token, as GRPO (its value estimates KL(pi || ref)
  without bias and is never negative; its gradient is that of KL(ref || pi), which also pulls pi
  toward ref). It needs no group structure, so the teacher, whose advantages are per dataset,
  uses the same loss. ``sequence_kl`` gives TRL's in-reward penalty (the student's
  ``kl_penalty="reward"``).
- Normalisation: TRL's loss is sequence-level: ``-mean_i(rho_i * A_i)`` with ``rho_i`` the ratio
  of whole-sequence probabilities, i.e. token log-probs summed per sequence, averaged over
  sequences. That is our ``"sequence"``. Our default ``"token"`` averages over every completion
  token of the batch (per-token ratios, as DAPO): for the policy-gradient term it has the same
  direction as ``"sequence"`` scaled by 1 / mean length, so the step size does not grow with
  completion length.
"""

import contextlib
from typing import Literal

import torch
from torch import Tensor

Normalisation = Literal["token", "sequence"]


def rloo_advantages(rewards: Tensor) -> Tensor:
    """Leave-one-out advantages over the last dim (one group per row): r_i - mean of the others."""
    n = rewards.shape[-1]
    if n < 2:
        raise ValueError(f"RLOO needs a group of at least 2, got {n}")
    others = (rewards.sum(-1, keepdim=True) - rewards) / (n - 1)
    return rewards - others


def completion_logprobs(
    model,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    pad_id: int,
    temperature: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Per-token log-probs [B, L] of each completion given its prompt, and the completion mask.

    One forward pass over left-padded prompts followed by right-padded completions, the layout
    the sampler generated them in, with the same position ids, so the values equal the sampler's.
    Logits are computed only for the completion positions and divided by the sampling temperature.
    """
    batch = len(prompt_ids)
    prompt_len = max(len(p) for p in prompt_ids)
    completion_len = max(len(c) for c in completion_ids)
    input_ids = torch.full((batch, prompt_len + completion_len), pad_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for row, (p, c) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
        input_ids[row, prompt_len - len(p) : prompt_len + len(c)] = torch.tensor(p + c)
        attention[row, prompt_len - len(p) : prompt_len + len(c)] = 1
    device = next(model.parameters()).device
    input_ids, attention = input_ids.to(device), attention.to(device)
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    logits = model(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=position_ids,
        logits_to_keep=completion_len + 1,
        use_cache=False,
    ).logits[:, :-1]
    logprobs = (logits.float() / temperature).log_softmax(-1)
    targets = input_ids[:, prompt_len:]
    mask = attention[:, prompt_len:].float()
    return logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask, mask


def sequence_kl(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor) -> Tensor:
    """TRL's KL penalty in the reward: sum over each sequence of log pi - log ref, no gradient."""
    return ((logprobs - ref_logprobs) * mask).sum(-1).detach()


def k3(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor) -> Tensor:
    """Per-token k3 estimate of KL(pi || ref): exp(ref - logp) - (ref - logp) - 1, >= 0."""
    delta = ref_logprobs - logprobs
    return (delta.exp() - delta - 1) * mask


def rloo_loss(
    logprobs: Tensor,
    ref_logprobs: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    kl_coef: float,
    normalisation: Normalisation = "token",
) -> tuple[Tensor, dict]:
    """Policy-gradient loss for one on-policy step plus kl_coef * k3 KL to the reference.

    logprobs [B, L] carry the gradient; advantages [B] are per sequence (RLOO within a group for
    the student, per dataset for the teacher). ref_logprobs may be None when kl_coef is 0.
    With normalisation="sequence" and kl_coef=0 this is TRL's RLOO loss, value and gradient.
    """
    mask = mask.to(logprobs.dtype)
    log_ratio = (logprobs - logprobs.detach()) * mask  # zero, but differentiates as log pi
    tokens = mask.sum().clamp(min=1)
    if normalisation == "sequence":
        pg_loss = -(log_ratio.sum(-1).exp() * advantages).mean()
    elif normalisation == "token":
        pg_loss = -(log_ratio.exp() * advantages.unsqueeze(-1) * mask).sum() / tokens
    else:
        raise ValueError(f"normalisation must be 'token' or 'sequence', got {normalisation!r}")
    stats = {"pg_loss": pg_loss.item()}
    loss = pg_loss
    if ref_logprobs is not None:
        per_token = k3(logprobs, ref_logprobs, mask)
        kl = per_token.sum(-1).mean() if normalisation == "sequence" else per_token.sum() / tokens
        stats["kl"] = (per_token.sum() / tokens).item()
        loss = loss + kl_coef * kl
    elif kl_coef != 0:
        raise ValueError("kl_coef is non-zero but no reference log-probs were given")
    stats["loss"] = loss.item()
    return loss, stats


def autocast(model, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Forward passes in `dtype` (bf16, fp16) over fp32 master weights; fp32 or None: as is."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(next(model.parameters()).device.type, dtype=dtype)


@torch.no_grad()
def reference_logprobs(policy, ref, prompt_ids, completion_ids, pad_id, temperature) -> Tensor:
    """Log-probs under the KL reference: `ref`, or the LoRA policy with its adapter disabled."""
    if ref is not None:
        return completion_logprobs(ref, prompt_ids, completion_ids, pad_id, temperature)[0]
    with policy.disable_adapter():
        return completion_logprobs(policy, prompt_ids, completion_ids, pad_id, temperature)[0]


def accumulate_gradients(
    policy,
    ref,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    advantages: Tensor,
    *,
    pad_id: int,
    temperature: float,
    kl_coef: float,
    normalisation: Normalisation,
    micro_batch: int,
    compute_dtype: torch.dtype | None = None,
) -> dict:
    """Backpropagate the RLOO loss of B rollouts, `micro_batch` at a time, and return the batch's
    loss, pg_loss and kl.

    Each micro-batch's loss is weighted by its share of the batch's completion tokens ("token")
    or sequences ("sequence"), so the gradients are the one-batch gradients whatever the
    micro-batch size, while peak memory is that of one micro-batch. advantages [B] are per
    rollout; ref may be None (LoRA: the adapter is disabled for the reference).
    """
    total_tokens = max(1, sum(len(c) for c in completion_ids))
    totals = {"loss": 0.0, "pg_loss": 0.0, "kl": 0.0}
    for start in range(0, len(completion_ids), micro_batch):
        end = min(start + micro_batch, len(completion_ids))
        prompts, completions = prompt_ids[start:end], completion_ids[start:end]
        tokens = sum(len(c) for c in completions)
        with autocast(policy, compute_dtype):
            logprobs, mask = completion_logprobs(policy, prompts, completions, pad_id, temperature)
            ref_logprobs = None
            if kl_coef > 0:
                ref_logprobs = reference_logprobs(
                    policy, ref, prompts, completions, pad_id, temperature
                ).to(logprobs.device)
        chunk_advantages = advantages[start:end].to(logprobs.device)
        loss, stats = rloo_loss(
            logprobs, ref_logprobs, chunk_advantages, mask, kl_coef, normalisation
        )
        sequences = (end - start) / len(completion_ids)
        weight = tokens / total_tokens if normalisation == "token" else sequences
        (loss * weight).backward()
        totals["loss"] += stats["loss"] * weight
        totals["pg_loss"] += stats["pg_loss"] * weight
        totals["kl"] += stats.get("kl", 0.0) * tokens / total_tokens  # a per-token mean
    return totals
