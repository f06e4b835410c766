"""moto's standalone S3 server on 127.0.0.1: real HTTP, so boto3, pods and the operator all talk
to it exactly as they would to a bucket endpoint (conditional writes, multipart rules and all)."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.infra.processes import ManagedProcess, free_port, wait_until

REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """Where the fake S3 listens and the (fake) credentials it accepts."""

    endpoint_url: str
    access_key_id: str = "testing"
    secret_access_key: str = "testing"
    region: str = REGION

    @property
    def env(self) -> dict[str, str]:
        """Variables that point boto3 (and anything using AWS's standard variables) here."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def client(self, service: str = "s3", credentials: Mapping[str, str] | None = None) -> Any:
        """A boto3 client for this server (S3 with path-style addressing: the host is an IP),
        signing with `credentials` (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or the test keys."""
        import boto3
        from botocore.config import Config

        keys = credentials or {}
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=keys.get("AWS_ACCESS_KEY_ID", self.access_key_id),
            aws_secret_access_key=keys.get("AWS_SECRET_ACCESS_KEY", self.secret_access_key),
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )


def start_moto(
    log_path: Path, timeout: float = 30.0, env: Mapping[str, str] | None = None
) -> tuple[S3Server, ManagedProcess]:
    """Starts ``python -m moto.server`` on a free port and waits until it answers HTTP; `env` is
    added to its environment (INITIAL_NO_AUTH_ACTION_COUNT=n: after n requests it checks keys
    and IAM policies, as S3 does)."""
    port = free_port()
    proc = ManagedProcess(
        "moto-server",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        log_path,
        env={**os.environ, **(env or {})},
    )
    server = S3Server(endpoint_url=f"http://127.0.0.1:{port}")

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{server.endpoint_url}/moto-api/", timeout=2) as resp:
                return resp.status == 200
        except urllib.error.HTTPError:
            return True  # any HTTP answer means the server is up

    try:
        wait_until(answers, timeout=timeout, what="moto server", alive=proc)
    except BaseException:
        proc.stop()
        raise
    return server, proc
