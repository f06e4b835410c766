"""The teacher's RLOO step: every rollout of dataset k shares the advantage A_k (docs/design.md,
"The algorithm", step 7)."""

import io
import math

import torch

from soar.rloo import accumulate_gradients, rloo_advantages


def cosine_lr(step: int, warmup: int, total: int, base: float) -> float:
    """Linear warmup then cosine decay to zero; `step` counts from 1."""
    if warmup and step <= warmup:
        return base * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def dataset_advantages(dataset_rewards: list[float]) -> list[float]:
    """A_k = R_k - mean of the other datasets' rewards."""
    return rloo_advantages(torch.tensor(dataset_rewards, dtype=torch.float64)).tolist()


def make_optimizer(model, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def optimizer_bytes(optimizer: torch.optim.Optimizer) -> bytes:
    buf = io.BytesIO()
    torch.save(optimizer.state_dict(), buf)
    return buf.getvalue()


def load_optimizer_state(optimizer: torch.optim.Optimizer, data: bytes) -> None:
    optimizer.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))


def teacher_step(
    policy,
    ref,
    prompt_ids: list[int],
    completions: list[list[int]],
    advantages: list[float],
    *,
    optimizer: torch.optim.Optimizer,
    lr: float,
    kl_coef: float,
    max_grad_norm: float,
    normalisation: str,
    pad_id: int,
    temperature: float,
    micro_batch: int = 16,
    compute_dtype: torch.dtype | None = None,
) -> dict:
    """One RLOO update over all accepted rollouts (every rollout of dataset k carries A_k),
    accumulated over micro-batches with exact token (or sequence) weighting."""
    policy.train()
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    stats = accumulate_gradients(
        policy,
        ref,
        [prompt_ids] * len(completions),
        completions,
        torch.tensor(advantages, dtype=torch.float32),
        pad_id=pad_id,
        temperature=temperature,
        kl_coef=kl_coef,
        normalisation=normalisation,
        micro_batch=micro_batch,
        compute_dtype=compute_dtype,
    )
    grad_norm = torch.nn.utils.clip_grad_norm_(
        [p for p in policy.parameters() if p.requires_grad], max_grad_norm
    )
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": stats["loss"], "kl": stats["kl"], "grad_norm": float(grad_norm), "lr": lr}
