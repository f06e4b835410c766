"""Where `make k8s-bins` (tools/k8s/build.sh) leaves the binaries the fixtures start.

The Kubernetes version is read from the wrapper module's go.mod, so bumping it there is the only
change needed; the cache lives outside the repository (``$SOAR_CACHE``, default
``~/.cache/soar``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_COMMAND = "make k8s-bins  (or: bash tools/k8s/build.sh)"
K8S_TOOLS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "helm",
)


class MissingBinaries(RuntimeError):
    """Raised with the build command when a binary the suite needs has not been built."""


def cache_dir() -> Path:
    return Path(os.environ.get("SOAR_CACHE") or Path.home() / ".cache" / "soar")


def kubernetes_version() -> str:
    """The k8s.io/kubernetes version pinned by tools/k8s/kubernetes/go.mod."""
    go_mod = REPO_ROOT / "tools" / "k8s" / "kubernetes" / "go.mod"
    match = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\S+)", go_mod.read_text(), re.M)
    if match is None:
        raise MissingBinaries(f"{go_mod} does not require k8s.io/kubernetes")
    return match.group(1)


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the built tools."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    helm: Path

    @property
    def bin_dir(self) -> Path:
        return self.kubectl.parent


def _prometheus_binary(root: Path) -> Path | None:
    def version_key(path: Path) -> list[int | str]:
        name = path.parents[2].name
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]

    found = [
        p for p in root.glob("*/usr/bin/prometheus") if not p.parents[2].name.endswith(".partial")
    ]
    candidates = sorted(found, key=version_key)
    return candidates[-1] if candidates else None


def find_binaries() -> Binaries:
    """The cached Kubernetes binaries, or MissingBinaries naming what is missing and the fix."""
    bin_dir = Path(
        os.environ.get("SOAR_K8S_BIN") or cache_dir() / "k8s" / kubernetes_version() / "bin"
    )
    paths = {name: bin_dir / name for name in K8S_TOOLS}
    missing = [str(path) for path in paths.values() if not os.access(path, os.X_OK)]
    if missing:
        raise MissingBinaries(
            "the control plane, kubectl and helm are not built yet; missing:\n  "
            + "\n  ".join(missing)
            + f"\nbuild them with: {BUILD_COMMAND}"
        )
    return Binaries(
        etcd=paths["etcd"],
        kube_apiserver=paths["kube-apiserver"],
        kube_controller_manager=paths["kube-controller-manager"],
        kube_scheduler=paths["kube-scheduler"],
        kubectl=paths["kubectl"],
        helm=paths["helm"],
    )


def find_prometheus() -> Path:
    """Debian's prometheus binary unpacked in the cache (newest version if several)."""
    binary = _prometheus_binary(cache_dir() / "prometheus")
    if binary is None:
        where = cache_dir() / "prometheus" / "<version>" / "usr/bin/prometheus"
        raise MissingBinaries(
            f"Prometheus is not unpacked yet (expected {where})\nbuild it with: {BUILD_COMMAND}"
        )
    return binary


def find_promtool() -> Path:
    """promtool, which Debian's prometheus package ships beside prometheus (`check rules`,
    `test rules`)."""
    binary = find_prometheus().parent / "promtool"
    if not binary.exists():
        raise MissingBinaries(f"{binary} is missing\nbuild it with: {BUILD_COMMAND}")
    return binary
