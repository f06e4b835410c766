"""Model checkpoints in the run store: full weights, or a LoRA adapter over the base model."""

import tempfile
from pathlib import Path

from soar.models import load_model
from soar.spec import ModelRef
from soar.store import Store

COMPLETE = "COMPLETE"


def save_checkpoint(
    store: Store, prefix: str, model, tokenizer, adapter_base: str | None = None
) -> None:
    """Upload save_pretrained's files, then a COMPLETE marker, so a half upload is never loaded.

    A peft model saves only its adapter; `adapter_base` names the checkpoint it sits on (None:
    the spec's base model), recorded in BASE so loading rebuilds the same stack.
    """
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        if hasattr(model, "peft_config"):
            (Path(tmp) / "BASE").write_text(adapter_base or "")
        else:
            tokenizer.save_pretrained(tmp)
        store.delete(prefix)
        store.upload_dir(Path(tmp), prefix)
    store.write_bytes(f"{prefix}/{COMPLETE}", b"")


def has_checkpoint(store: Store, prefix: str) -> bool:
    return store.exists(f"{prefix}/{COMPLETE}")


def load_checkpoint(store: Store, prefix: str | None, base: ModelRef, trainable: bool = False):
    """(model, tokenizer) from the store; prefix None means the base model itself."""
    if prefix is None:
        return load_model(base.name, dtype=base.dtype)
    if not has_checkpoint(store, prefix):
        raise FileNotFoundError(f"{store.uri}/{prefix}: no complete checkpoint")
    with tempfile.TemporaryDirectory() as tmp:
        store.download_dir(prefix, Path(tmp))
        base_file = Path(tmp) / "BASE"
        if base_file.exists():
            from peft import PeftModel

            model, tokenizer = load_checkpoint(store, base_file.read_text() or None, base)
            model = PeftModel.from_pretrained(model, tmp, is_trainable=trainable)
            return model, tokenizer
        return load_model(tmp, dtype=base.dtype)


def copy_checkpoint(store: Store, source: str, target: str) -> None:
    """Copy a complete checkpoint key by key; the marker goes last."""
    store.delete(target)
    for key in store.list(source):
        if not key.endswith(f"/{COMPLETE}"):
            store.write_bytes(target + key[len(source) :], store.read_bytes(key))
    store.write_bytes(f"{target}/{COMPLETE}", b"")
