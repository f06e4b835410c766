"""Model checkpoints in the run store: full weights, or a LoRA adapter over the base model.

A checkpoint is written to a fresh folder under its prefix and committed by a manifest naming
that folder with every file's size and SHA-256 (docs/design.md, "The run store"). A reader loads
exactly what the manifest names and verifies it; a rewrite never deletes files a reader of the
previous manifest may be loading until the new manifest is in place.
"""

import hashlib
import json
import tempfile
import uuid
from pathlib import Path

import torch

from soar import layout
from soar.models import load_model
from soar.spec import ModelRef
from soar.store import RecordError, Store, read_json

LEGACY_MARKER = "COMPLETE"  # checkpoints written before manifests: files beside this marker


def master_weights(base: ModelRef, lora: bool) -> ModelRef:
    """What to load a model in for training: float32 master weights for full fine-tuning (a
    bf16 weight loses an lr-sized update to rounding), the spec's precision under LoRA (the base
    is frozen; peft keeps adapters in float32)."""
    return base if lora else base.model_copy(update={"dtype": "float32"})


def compute_dtype(base: ModelRef) -> torch.dtype:
    """The precision forward passes run in (autocast over float32 master weights)."""
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        base.dtype
    ]


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or corrupt; the message names it and how to redo it."""


def save_checkpoint(
    store: Store,
    prefix: str,
    model,
    tokenizer,
    adapter_base: str | None = None,
    adapter: str = "default",
) -> None:
    """Upload save_pretrained's files to a fresh folder, then the manifest that commits them.

    A peft model saves only its adapter; `adapter_base` names the checkpoint it sits on (None:
    the spec's base model), recorded in BASE so loading rebuilds the same stack. Of a model with
    several adapters (batched students) `adapter` is saved, as the checkpoint's only adapter.
    """
    version = uuid.uuid4().hex[:12]
    with tempfile.TemporaryDirectory() as tmp:
        if hasattr(model, "peft_config"):
            model.save_pretrained(tmp, selected_adapters=[adapter])
            if adapter != "default":  # peft writes a named adapter into a subfolder of its name
                for path in (Path(tmp) / adapter).iterdir():
                    path.rename(Path(tmp) / path.name)
                (Path(tmp) / adapter).rmdir()
            (Path(tmp) / "BASE").write_text(adapter_base or "")
        else:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        files = {
            str(path.relative_to(tmp)): {"size": path.stat().st_size, "sha256": _sha256(path)}
            for path in sorted(Path(tmp).rglob("*"))
            if path.is_file()
        }
        store.upload_dir(Path(tmp), layout.checkpoint_files(prefix, version))
    manifest = {"version": version, "files": files}
    store.write_bytes(layout.checkpoint_manifest(prefix), json.dumps(manifest, indent=1).encode())
    # Earlier attempts' folders (and a legacy checkpoint's files) are garbage from here on.
    keep = (layout.checkpoint_files(prefix, version) + "/", layout.checkpoint_manifest(prefix))
    for key in store.list(prefix):
        if not key.startswith(keep):
            store.delete(key)


def has_checkpoint(store: Store, prefix: str) -> bool:
    return store.exists(layout.checkpoint_manifest(prefix)) or store.exists(
        f"{prefix}/{LEGACY_MARKER}"
    )


def load_checkpoint(store: Store, prefix: str | None, base: ModelRef, trainable: bool = False):
    """(model, tokenizer) from the store, verified against its manifest; prefix None means the
    base model itself. A checkpoint that is missing or does not match its manifest raises
    CheckpointError and is never loaded."""
    if prefix is None:
        return load_model(base.name, dtype=base.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        _download_verified(store, prefix, Path(tmp))
        base_file = Path(tmp) / "BASE"
        try:
            if base_file.exists():
                from peft import PeftModel

                model, tokenizer = load_checkpoint(store, base_file.read_text() or None, base)
                return PeftModel.from_pretrained(model, tmp, is_trainable=trainable), tokenizer
            return load_model(tmp, dtype=base.dtype)
        except CheckpointError:
            raise  # the base of an adapter is broken: its own message says which
        except (OSError, ValueError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise _broken(store, prefix, f"cannot be loaded: {first}") from None


def _download_verified(store: Store, prefix: str, local: Path) -> None:
    """The manifest's files in `local`, each checked for its size and SHA-256."""
    if not store.exists(layout.checkpoint_manifest(prefix)):
        if store.exists(f"{prefix}/{LEGACY_MARKER}"):
            store.download_dir(prefix, local)  # no checksums were recorded then
            return
        raise _broken(store, prefix, "missing (no manifest)")
    try:
        manifest = read_json(store, layout.checkpoint_manifest(prefix))
        version, files = manifest["version"], manifest["files"]
    except (RecordError, KeyError, TypeError):
        raise _broken(store, prefix, "its manifest is corrupt") from None
    folder = layout.checkpoint_files(prefix, version)
    try:
        store.download_dir(folder, local)
    except KeyError:
        raise _broken(store, prefix, f"its files ({folder}/) are missing") from None
    for name, expected in files.items():
        path = local / name
        if not path.is_file():
            raise _broken(store, prefix, f"{name} is missing")
        if path.stat().st_size != expected["size"] or _sha256(path) != expected["sha256"]:
            raise _broken(store, prefix, f"{name} does not match its size and SHA-256")


def _broken(store: Store, prefix: str, what: str) -> CheckpointError:
    how = layout.how_to_recompute(prefix + "/")
    return CheckpointError(f"checkpoint {store.uri}/{prefix}: {what}; {how}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
