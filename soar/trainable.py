"""The model a stage trains: the model itself (full fine-tuning) or LoRA adapters on it, several
adapters when students are batched (training.studentsPerStage); gradient checkpointing; the
frozen KL reference of full fine-tuning."""

import copy

import torch
from peft import LoraConfig, PeftModel, get_peft_model


def make_student(model, lora: dict | None, *, seed: int = 0):
    """The model to train: itself for full fine-tuning, else wrapped with a fresh LoRA adapter.

    A model that already carries an adapter (a promoted LoRA student) is merged first, so that
    disabling the new adapter gives back the weights the inner loop starts from: its KL reference.
    lora keys: rank, alpha, and optionally dropout (0) and target_modules ("all-linear").
    """
    if lora is None:
        return model
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    config = LoraConfig(
        r=lora["rank"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora.get("dropout", 0.0),
        target_modules=lora.get("target_modules", "all-linear"),
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(seed)  # the adapter's A matrices are drawn from the global generator
    return get_peft_model(model, config)


def base_model(model):
    """The transformers model under a PeftModel's adapters, or the model itself."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def enable_gradient_checkpointing(model) -> None:
    """Recompute activations in the backward pass instead of keeping them: less memory for one
    more forward; the gradients are the same."""
    base_model(model).gradient_checkpointing_enable(
        gradient_checkpointing_kwargs={"use_reentrant": False}
    )


def frozen_copy(model):
    """The KL reference for full fine-tuning: the starting weights, without gradients."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


def add_adapters(policy: PeftModel, count: int) -> list[str]:
    """Batched LoRA students: `count` adapters on one PeftModel (make_student's "default" and
    count-1 more), each initialised as make_student initialises a student's adapter alone.
    Returns their names."""
    names = ["default"] + [f"student-{k}" for k in range(1, count)]
    config = policy.peft_config["default"]
    for name in names[1:]:
        torch.manual_seed(0)  # make_student's seed: the same A matrices as a student alone
        policy.add_adapter(name, config)
    policy.set_adapter("default")
    return names


def adapter_parameters(policy, adapter: str | None) -> list[torch.nn.Parameter]:
    """The parameters one learner trains: its adapter's, or every trainable one."""
    if adapter is None:
        return [p for p in policy.parameters() if p.requires_grad]
    return [p for name, p in policy.named_parameters() if f".{adapter}." in name]
