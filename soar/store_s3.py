"""The s3:// run store: a prefix in a bucket, reached with boto3, its endpoint, region and retry
window from S3Options (docs/design.md, "S3")."""

import itertools
import os
import random
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soar.store_errors import StoreError


@dataclass(frozen=True)
class S3Options:
    """How to reach S3. Stages get these through their environment (`env()`), so the command
    line of a stage stays `soar stage ... --run s3://...` on a laptop and in a pod alike."""

    endpoint: str | None = None  # None: AWS
    region: str | None = None
    addressing_style: str | None = None  # path | virtual; default: path with a custom endpoint
    retry_seconds: float = 300.0  # how long an unreachable endpoint is retried before failing
    # The AWS variables (CREDENTIAL_KEYS) to sign with instead of this process's own: the operator
    # reads each run's store with the keys of that run's Secret. Never printed.
    credentials: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

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


# The keys of a store Secret that sign requests, and boto3's names for them.
CREDENTIAL_KEYS = {
    "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "AWS_SESSION_TOKEN": "aws_session_token",
}

# Answers worth retrying: the endpoint is away, overloaded or slow. Anything else fails at once.
RETRYABLE_CODES = {
    "500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown",
    "RequestTimeout", "Throttling", "ThrottlingException", "RequestLimitExceeded",
}  # fmt: skip
MAX_BACKOFF_SECONDS = 20.0


class S3Store:
    """A prefix in an S3 bucket. Credentials come from S3Options.credentials when set (the
    operator: the run's Secret), else from the standard AWS variables (a stage: the same Secret
    by envFrom); the endpoint, region and retry window from S3Options."""

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
        keys = self.options.credentials or {}
        self.client = boto3.client(
            "s3",
            endpoint_url=self.options.endpoint,
            region_name=self.options.region,
            config=config,
            **{arg: keys[var] for var, arg in CREDENTIAL_KEYS.items() if keys.get(var)},
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
