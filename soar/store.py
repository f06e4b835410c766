"""The run store: every stage's inputs and outputs live under one URI: file:// (here) or s3://
(soar/store_s3.py).

Keys are '/'-separated paths relative to the run root. Writes are atomic (a reader never sees half
a file) and `create` is conditional, so two writers can never both commit the same step.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from soar.store_errors import RecordError, StoreError

if TYPE_CHECKING:
    from soar.store_s3 import S3Options  # the S3 backend imports this module


class Store(Protocol):
    uri: str

    def read_bytes(self, key: str) -> bytes: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...
    def create(self, key: str, data: bytes) -> bool: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def sizes(self, prefix: str) -> dict[str, int]: ...
    def delete(self, prefix: str) -> None: ...
    def upload_dir(self, local: Path, prefix: str) -> None: ...
    def download_dir(self, prefix: str, local: Path) -> None: ...


class FileStore:
    """A directory on a local or shared filesystem."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise StoreError(f"{self.uri}: key {key!r} escapes the run store")
        return path

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def _temp_copy(self, path: Path, data: bytes) -> str:
        """A synced temporary file beside path; none is left behind when writing it fails (a
        full disk, say), and the error names the key."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        except OSError as err:
            raise self._error("write", path, err) from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            os.unlink(tmp)
            raise self._error("write", path, err) from None
        return tmp

    def _error(self, what: str, path: Path, err: OSError) -> StoreError:
        key = path.relative_to(self.root)
        return StoreError(f"{self.uri}: cannot {what} {str(key)!r}: {err.strerror}")

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.replace(self._temp_copy(path, data), path)

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        tmp = self._temp_copy(path, data)
        try:
            os.link(tmp, path)  # atomic, and fails if the key exists
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def sizes(self, prefix: str) -> dict[str, int]:
        """Keys under prefix with their sizes in bytes (one listing, no reads)."""
        return {key: (self.root / key).stat().st_size for key in self.list(prefix)}

    def delete(self, prefix: str) -> None:
        path = self._path(prefix)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    def upload_dir(self, local: Path, prefix: str) -> None:
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            self.write_bytes(f"{prefix}/{path.relative_to(local)}", path.read_bytes())

    def download_dir(self, prefix: str, local: Path) -> None:
        keys = self.list(prefix)
        if not keys:
            raise KeyError(prefix)
        for key in keys:
            target = local / Path(key).relative_to(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read_bytes(key))


def open_store(uri: str, s3: "S3Options | None" = None) -> Store:
    """The store behind a URI; a plain path is taken as a local directory. An s3:// store uses
    `s3`, or the options in this process's environment."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return FileStore(Path(parsed.path if parsed.scheme else uri))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"{uri}: an s3:// URI needs a bucket")
        from soar.store_s3 import S3Store

        return S3Store(parsed.netloc, parsed.path, s3)
    raise StoreError(f"{uri}: unsupported run store scheme {parsed.scheme!r} (file:// or s3://)")


def read_json(store: Store, key: str) -> Any:
    """The JSON document at key; KeyError if absent, RecordError naming the key if corrupt."""
    try:
        return json.loads(store.read_bytes(key))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordError(f"{store.uri}/{key}: corrupt, not JSON ({_reason(err)})") from None


def write_json(store: Store, key: str, value: Any) -> None:
    store.write_bytes(key, json.dumps(value, indent=1, sort_keys=True).encode())


def create_json(store: Store, key: str, value: Any) -> bool:
    """write_json, only if the key does not exist yet (Store.create); False if it did."""
    return store.create(key, json.dumps(value, indent=1, sort_keys=True).encode())


def read_jsonl(store: Store, key: str) -> list[dict]:
    """The rows of a JSONL file; KeyError if absent, RecordError naming key and line if corrupt."""
    rows = []
    for number, line in enumerate(store.read_bytes(key).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RecordError(f"{store.uri}/{key}:{number}: corrupt ({_reason(err)})") from None
    return rows


def _reason(err: ValueError) -> str:
    return err.msg if isinstance(err, json.JSONDecodeError) else "not UTF-8"


def write_jsonl(store: Store, key: str, rows: list[dict]) -> None:
    store.write_bytes(key, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())
