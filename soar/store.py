"""The run store: every stage's inputs and outputs live under one URI (file:// here, s3:// next).

Keys are '/'-separated paths relative to the run root. Writes are atomic (a reader never sees half
a file) and `create` is conditional, so two writers can never both commit the same step.
"""

import itertools
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse


class StoreError(RuntimeError):
    """The store cannot be used; the message says which URI or key and why."""


class RecordError(ValueError):
    """A record in the store is missing or corrupt: retrying will not help. The message names the
    key and, where it can, how to recompute it."""


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


@dataclass(frozen=True)
class S3Options:
    """How to reach S3. Stages get these through their environment (`env()`), so the command
    line of a stage stays `soar stage ... --run s3://...` on a laptop and in a pod alike."""

    endpoint: str | None = None  # None: AWS
    region: str | None = None
    addressing_style: str | None = None  # path | virtual; default: path with a custom endpoint
    retry_seconds: float = 300.0  # how long an unreachable endpoint is retried before failing

    ENV = {
        "endpoint": "AWS_ENDPOINT_URL",
        "region": "AWS_DEFAULT_REGION",
        "addressing_style": "SOAR_S3_ADDRESSING_STYLE",
        "retry_seconds": "SOAR_STORE_RETRY_SECONDS",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "S3Options":
        values: dict[str, Any] = {f: env[v] for f, v in cls.ENV.items() if env.get(v)}
        values["endpoint"] = env.get("AWS_ENDPOINT_URL_S3") or values.get("endpoint")
        if "retry_seconds" in values:
            values["retry_seconds"] = float(values["retry_seconds"])
        return cls(**values)

    def env(self) -> dict[str, str]:
        """The environment that gives a stage these options."""
        values = {f: getattr(self, f) for f in self.ENV}
        return {self.ENV[f]: str(v) for f, v in values.items() if v is not None}


# Answers worth retrying: the endpoint is away, overloaded or slow. Anything else fails at once.
RETRYABLE_CODES = {
    "500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown",
    "RequestTimeout", "Throttling", "ThrottlingException", "RequestLimitExceeded",
}  # fmt: skip
MAX_BACKOFF_SECONDS = 20.0


class S3Store:
    """A prefix in an S3 bucket. Credentials come from the standard AWS variables
    (AWS_ACCESS_KEY_ID, ...), which the operator fills from a Secret reference; the endpoint,
    region and retry window from S3Options."""

    def __init__(self, bucket: str, prefix: str, options: S3Options | None = None):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.options = options or S3Options.from_env()
        style = self.options.addressing_style or ("path" if self.options.endpoint else None)
        config = Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            s3={"addressing_style": style} if style else {},
        )
        self.client = boto3.client(
            "s3",
            endpoint_url=self.options.endpoint,
            region_name=self.options.region,
            config=config,
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, fn, **kwargs):
        """Run one S3 call. An unreachable or overloaded endpoint is retried with exponential
        backoff and full jitter for options.retry_seconds; errors become one-line StoreErrors
        naming the key (never secrets)."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

        deadline = time.monotonic() + self.options.retry_seconds
        for attempt in itertools.count():
            try:
                return fn(Bucket=self.bucket, **kwargs)
            except ClientError as err:
                code = err.response.get("Error", {}).get("Code", "")
                if code in ("NoSuchKey", "404", "NotFound"):
                    raise KeyError(key) from None
                if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                    raise FileExistsError(key) from None
                if code not in RETRYABLE_CODES:
                    raise StoreError(f"{self.uri}: cannot {what} {key!r}: {code or err}") from None
                reason = code
            except (ConnectionError, HTTPClientError) as err:
                reason = str(err)
            except S3UploadFailedError as err:  # upload_file wraps the cause in its message
                if not any(code in str(err) for code in RETRYABLE_CODES | {"connect"}):
                    raise StoreError(f"{self.uri}: cannot {what} {key!r}: {err}") from None
                reason = str(err)
            except BotoCoreError as err:
                raise StoreError(f"{self.uri}: cannot {what} {key!r}: {err}") from None
            delay = random.uniform(0, min(MAX_BACKOFF_SECONDS, 0.5 * 2**attempt))
            if time.monotonic() + delay > deadline:
                raise StoreError(
                    f"{self.uri}: cannot {what} {key!r}: {reason} (still failing after "
                    f"{self.options.retry_seconds:.0f} s of retries)"
                ) from None
            time.sleep(delay)

    def read_bytes(self, key: str) -> bytes:
        def get(**kwargs) -> bytes:
            return self.client.get_object(**kwargs)["Body"].read()

        return self._call("read", key, get, Key=self._key(key))

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
        return sorted(self.sizes(prefix))

    def sizes(self, prefix: str) -> dict[str, int]:
        root = self._key(prefix).rstrip("/") + "/"
        sizes: dict[str, int] = {}
        token: dict = {}
        while True:
            page = self._call("list", prefix, self.client.list_objects_v2, Prefix=root, **token)
            base = len(self.prefix) + 1 if self.prefix else 0
            sizes |= {obj["Key"][base:]: obj["Size"] for obj in page.get("Contents", [])}
            if not page.get("IsTruncated"):
                return sizes
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


def open_store(uri: str, s3: S3Options | None = None) -> Store:
    """The store behind a URI; a plain path is taken as a local directory. An s3:// store uses
    `s3`, or the options in this process's environment."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return FileStore(Path(parsed.path if parsed.scheme else uri))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"{uri}: an s3:// URI needs a bucket")
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
