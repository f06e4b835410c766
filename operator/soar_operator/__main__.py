"""`python -m soar_operator` (or `soar-operator`): start the operator.

Settings come from the environment (soar_operator.config); the flags override the namespaces.
One operator is active at a time: kopf peering, with the start time as priority, so the newest
operator wins (during a rolling update the old one pauses as soon as the new one appears).
"""

import argparse
import logging
import os
import socket
import time

import kopf

from soar_operator import metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="soar-operator", description=__doc__)
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="serve this namespace (repeatable; default: $SOAR_WATCH_NAMESPACES, else all)",
    )
    parser.add_argument("--standalone", action="store_true", help="no peering with other operators")
    args = parser.parse_args(argv)

    from soar_operator.handlers import CONFIG, operator_settings  # registers the handlers

    kopf.configure(verbose=False)
    logging.getLogger("soar_operator").setLevel(logging.INFO)
    # kopf logs every successful timer tick, aiohttp every liveness probe.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    namespaces = args.namespace or list(CONFIG.namespaces)
    standalone = args.standalone or not CONFIG.peering
    identity = os.environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}"
    metrics.serve(CONFIG.metrics_port)
    kopf.run(
        settings=operator_settings(identity),
        identity=identity,
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=standalone,
        peering_name=None if standalone else CONFIG.peering,
        priority=int(time.time() * 1000),
        liveness_endpoint=f"http://0.0.0.0:{CONFIG.health_port}/healthz",
    )


if __name__ == "__main__":
    main()
