"""Kubeconfig files for the test cluster: one per identity, all trusting the test CA."""

from __future__ import annotations

from pathlib import Path

import yaml

CLUSTER_NAME = "soar-test"


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_cert: Path,
    token: str,
    user: str,
    namespace: str = "default",
) -> Path:
    """Writes a kubeconfig that reaches ``server`` as ``user`` with a bearer token."""
    context = f"{user}@{CLUSTER_NAME}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority": str(ca_cert)},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": CLUSTER_NAME, "user": user, "namespace": namespace},
            }
        ],
        "current-context": context,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
