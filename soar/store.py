"""The run store: every stage's inputs and outputs live under one URI (file:// here, s3:// next).

Keys are '/'-separated paths relative to the run root. Writes are atomic (a reader never sees half
a file) and `create` is conditional, so two writers can never both commit the same step.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse


class StoreError(RuntimeError):
    """The store cannot be used; the message says which URI or key and why."""


class Store(Protocol):
    uri: str

    def read_bytes(self, key: str) -> bytes: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...
    def create(self, key: str, data: bytes) -> bool: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
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
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

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


class S3Store:
    """A prefix in an S3 bucket. Endpoint and credentials come from the standard AWS variables
    (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), which the operator fills from a Secret reference."""

    def __init__(self, bucket: str, prefix: str):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        custom = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        path_style = {"addressing_style": "path"} if custom else {}
        config = Config(retries={"max_attempts": 5, "mode": "standard"}, s3=path_style)
        self.client = boto3.client("s3", config=config)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, fn, **kwargs):
        """Run one S3 call; errors become one-line StoreErrors naming the key (never secrets)."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise KeyError(key) from None
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise FileExistsError(key) from None
            raise StoreError(f"{self.uri}: cannot {what} {key!r}: {code or err}") from None
        except (BotoCoreError, S3UploadFailedError) as err:
            raise StoreError(f"{self.uri}: cannot {what} {key!r}: {err}") from None

    def read_bytes(self, key: str) -> bytes:
        body = self._call("read", key, self.client.get_object, Key=self._key(key))["Body"]
        return body.read()

    def write_bytes(self, key: str, data: bytes) -> None:
        self._call("write", key, self.client.put_object, Key=self._key(key), Body=data)

    def create(self, key: str, data: bytes) -> bool:
        try:
            self._call(
                "create",
                key,
                self.client.put_object,
                Key=self._key(key),
                Body=data,
                IfNoneMatch="*",
            )
            return True
        except FileExistsError:
            return False

    def exists(self, key: str) -> bool:
        try:
            self._call("check", key, self.client.head_object, Key=self._key(key))
            return True
        except KeyError:
            return False

    def list(self, prefix: str) -> list[str]:
        root = self._key(prefix).rstrip("/") + "/"
        keys: list[str] = []
        token: dict = {}
        while True:
            page = self._call("list", prefix, self.client.list_objects_v2, Prefix=root, **token)
            base = len(self.prefix) + 1 if self.prefix else 0
            keys += [obj["Key"][base:] for obj in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete(self, prefix: str) -> None:
        keys = self.list(prefix) or ([prefix] if self.exists(prefix) else [])
        for start in range(0, len(keys), 1000):
            objects = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            self._call("delete", prefix, self.client.delete_objects, Delete={"Objects": objects})

    def upload_dir(self, local: Path, prefix: str) -> None:
        """Files in parallel, each in parallel multipart parts (boto3's transfer manager)."""
        from concurrent.futures import ThreadPoolExecutor

        files = sorted(p for p in local.rglob("*") if p.is_file())

        def upload(path: Path) -> None:
            key = f"{prefix}/{path.relative_to(local)}"
            self._call(
                "upload",
                key,
                lambda **kw: self.client.upload_file(str(path), **kw),
                Key=self._key(key),
            )

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(upload, files))

    def download_dir(self, prefix: str, local: Path) -> None:
        from concurrent.futures import ThreadPoolExecutor

        keys = self.list(prefix)
        if not keys:
            raise KeyError(prefix)

        def download(key: str) -> None:
            target = local / Path(key).relative_to(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            self._call(
                "download",
                key,
                lambda **kw: self.client.download_file(Filename=str(target), **kw),
                Key=self._key(key),
            )

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(download, keys))


def open_store(uri: str) -> Store:
    """The store behind a URI; a plain path is taken as a local directory."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return FileStore(Path(parsed.path if parsed.scheme else uri))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"{uri}: an s3:// URI needs a bucket")
        return S3Store(parsed.netloc, parsed.path)
    raise StoreError(f"{uri}: unsupported run store scheme {parsed.scheme!r} (file:// or s3://)")


def read_json(store: Store, key: str) -> Any:
    return json.loads(store.read_bytes(key))


def write_json(store: Store, key: str, value: Any) -> None:
    store.write_bytes(key, json.dumps(value, indent=1, sort_keys=True).encode())


def read_jsonl(store: Store, key: str) -> list[dict]:
    return [json.loads(line) for line in store.read_bytes(key).decode().splitlines() if line]


def write_jsonl(store: Store, key: str, rows: list[dict]) -> None:
    store.write_bytes(key, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())
