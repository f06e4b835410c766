"""A real Prometheus (Debian's build, unpacked into the cache) scraping given targets every second,
and a query helper that waits for the answer a test expects."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.infra.processes import ManagedProcess, free_port, wait_until

Result = list[dict[str, Any]]


class PrometheusQueryError(RuntimeError):
    """A query did not return what was expected before its deadline."""


def query_prometheus(
    url: str,
    expr: str,
    *,
    until: Callable[[Result], bool] = bool,
    timeout: float = 30.0,
    interval: float = 0.5,
) -> Result:
    """Runs an instant query against ``url`` (the server's base URL) until ``until(result)`` holds.

    Retries connection errors and unsatisfying answers (a fresh target is not scraped yet);
    the timeout error quotes the last answer so a failing test says what Prometheus saw.
    """
    query = urllib.parse.urlencode({"query": expr})
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=5) as resp:
                body = json.load(resp)
            if body.get("status") != "success":
                raise PrometheusQueryError(f"query {expr!r} failed: {body}")
            result = body["data"]["result"]
            if until(result):
                return result
            last = result
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            if exc.code == 400:  # a bad expression will not get better by waiting
                raise PrometheusQueryError(f"query {expr!r} rejected: {detail}") from exc
            last = f"HTTP {exc.code}: {detail}"
        except (OSError, ValueError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise PrometheusQueryError(
                f"query {expr!r} gave no satisfying answer within {timeout:.0f} s; last: {last!r}"
            )
        time.sleep(interval)


@dataclass
class PrometheusServer:
    """A running Prometheus and where to reach it."""

    url: str
    config_path: Path
    process: ManagedProcess

    def query(
        self, expr: str, *, until: Callable[[Result], bool] = bool, timeout: float = 30.0
    ) -> Result:
        return query_prometheus(self.url, expr, until=until, timeout=timeout)

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health, as /api/v1/targets reports them."""
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as resp:
            return json.load(resp)["data"]["activeTargets"]

    def stop(self) -> None:
        self.process.stop()


def write_config(path: Path, targets: Sequence[str], job: str, metrics_path: str) -> Path:
    """A scrape config: every target (host:port) every second."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": metrics_path,
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_prometheus(
    binary: Path,
    workdir: Path,
    targets: Sequence[str],
    *,
    job: str = "test",
    metrics_path: str = "/metrics",
    timeout: float = 30.0,
) -> PrometheusServer:
    """Starts Prometheus on a free loopback port and waits for /-/ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(workdir / "prometheus.yml", targets, job, metrics_path)
    port = free_port()
    proc = ManagedProcess(
        "prometheus",
        [
            str(binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ],
        workdir / "prometheus.log",
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
            return resp.status == 200

    try:
        wait_until(ready, timeout=timeout, what="prometheus /-/ready", alive=proc)
    except BaseException:
        proc.stop()
        raise
    return PrometheusServer(url=url, config_path=config, process=proc)
