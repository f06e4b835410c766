"""What a kubelet would hand a container process: its argv and environment, resolved from the pod.

Follows the kubelet's rules where they matter to SOAR's Jobs: ``envFrom`` first, then ``env`` in
order; ``valueFrom`` reads Secrets, ConfigMaps and pod fields (the Indexed Job completion index
arrives as ``metadata.annotations['batch.kubernetes.io/job-completion-index']``); ``$(VAR)``
references expand against variables defined earlier and ``$$`` escapes a dollar.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

_REF = re.compile(r"\$(\$|\(([A-Za-z_][A-Za-z0-9_.\-]*)\))")
_FIELD_KEY = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ContainerConfigError(RuntimeError):
    """The pod cannot start as written (missing Secret key, unknown field...): the kubelet's
    CreateContainerConfigError."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: unknown references stay as written."""

    def sub(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        name = match.group(2)
        return env[name] if name in env else match.group(0)

    return _REF.sub(sub, text)


def _field_value(pod: k8s.V1Pod, path: str) -> str:
    meta, spec, status = pod.metadata, pod.spec, pod.status
    simple: dict[str, Any] = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid,
        "spec.nodeName": spec.node_name,
        "spec.serviceAccountName": spec.service_account_name,
        "status.hostIP": status.host_ip if status else None,
        "status.podIP": status.pod_ip if status else None,
    }
    if path in simple:
        return simple[path] or ""
    keyed = _FIELD_KEY.match(path)
    if keyed:
        source = (meta.labels if keyed.group(1) == "labels" else meta.annotations) or {}
        return source.get(keyed.group(2), "")
    raise ContainerConfigError(f"unsupported fieldRef {path!r}")


class EnvResolver:
    """Resolves env/envFrom of one container, reading Secrets and ConfigMaps from the API."""

    def __init__(self, core: k8s.CoreV1Api, pod: k8s.V1Pod) -> None:
        self.core = core
        self.pod = pod
        self.namespace = pod.metadata.namespace
        self._secrets: dict[str, dict[str, str] | None] = {}
        self._config_maps: dict[str, dict[str, str] | None] = {}

    def _secret(self, name: str) -> dict[str, str] | None:
        if name not in self._secrets:
            try:
                secret = self.core.read_namespaced_secret(name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self._secrets[name] = None
            else:
                data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
                data.update(secret.string_data or {})
                self._secrets[name] = data
        return self._secrets[name]

    def _config_map(self, name: str) -> dict[str, str] | None:
        if name not in self._config_maps:
            try:
                cm = self.core.read_namespaced_config_map(name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self._config_maps[name] = None
            else:
                self._config_maps[name] = dict(cm.data or {})
        return self._config_maps[name]

    def _lookup(self, kind: str, name: str, key: str | None, optional: bool | None) -> Any:
        source = self._secret(name) if kind == "Secret" else self._config_map(name)
        if source is None:
            if optional:
                return None
            raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
        if key is None:
            return source
        if key not in source:
            if optional:
                return None
            raise ContainerConfigError(f"couldn't find key {key} in {kind} {self.namespace}/{name}")
        return source[key]

    def resolve(self, container: k8s.V1Container) -> dict[str, str]:
        """The container's own variables (without the inherited process environment)."""
        env: dict[str, str] = {}
        for source in container.env_from or []:
            prefix = source.prefix or ""
            if source.secret_ref is not None:
                ref, kind = source.secret_ref, "Secret"
            elif source.config_map_ref is not None:
                ref, kind = source.config_map_ref, "ConfigMap"
            else:
                continue
            values = self._lookup(kind, ref.name, None, ref.optional) or {}
            env.update({prefix + k: v for k, v in values.items()})
        for var in container.env or []:
            if var.value_from is None:
                env[var.name] = expand(var.value or "", env)
                continue
            src = var.value_from
            if src.secret_key_ref is not None:
                ref = src.secret_key_ref
                value = self._lookup("Secret", ref.name, ref.key, ref.optional)
            elif src.config_map_key_ref is not None:
                ref = src.config_map_key_ref
                value = self._lookup("ConfigMap", ref.name, ref.key, ref.optional)
            elif src.field_ref is not None:
                value = _field_value(self.pod, src.field_ref.field_path)
            else:
                raise ContainerConfigError(f"env {var.name}: unsupported valueFrom")
            if value is not None:
                env[var.name] = value
        return env

    def argv(self, container: k8s.V1Container, env: Mapping[str, str]) -> list[str]:
        """command + args with ``$(VAR)`` expanded; the image's entrypoint is unknown here."""
        if not container.command:
            raise ContainerConfigError(
                f"container {container.name} has no command: the test node agent ignores the "
                "image, so the pod must say what to run"
            )
        return [expand(part, env) for part in [*container.command, *(container.args or [])]]
