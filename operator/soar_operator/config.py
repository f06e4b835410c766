"""The operator's own settings, from its environment (the Helm chart sets them)."""

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from soar.spec_execution import PodSettings


@dataclass(frozen=True)
class Config:
    namespaces: tuple[str, ...]  # empty: every namespace
    interval: float  # seconds between two reconciles of one run
    metrics_port: int
    health_port: int
    peering: str  # kopf peering object name; empty: run standalone
    pod_defaults: PodSettings  # under spec.pods of every run

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Config":
        """SOAR_WATCH_NAMESPACES (comma-separated), SOAR_OPERATOR_INTERVAL, SOAR_METRICS_PORT,
        SOAR_HEALTH_PORT, SOAR_PEERING, SOAR_WORKER_IMAGE and SOAR_POD_DEFAULTS (JSON of
        spec.pods.default fields)."""
        defaults = PodSettings.model_validate(json.loads(env.get("SOAR_POD_DEFAULTS") or "{}"))
        if env.get("SOAR_WORKER_IMAGE"):
            defaults = defaults.model_copy(update={"image": env["SOAR_WORKER_IMAGE"]})
        namespaces = env.get("SOAR_WATCH_NAMESPACES", "")
        return cls(
            namespaces=tuple(ns.strip() for ns in namespaces.split(",") if ns.strip()),
            interval=float(env.get("SOAR_OPERATOR_INTERVAL", "5")),
            metrics_port=int(env.get("SOAR_METRICS_PORT", "8080")),
            health_port=int(env.get("SOAR_HEALTH_PORT", "8081")),
            peering=env.get("SOAR_PEERING", "soar-operator"),
            pod_defaults=defaults,
        )
