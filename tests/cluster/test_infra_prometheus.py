"""A real Prometheus scrapes a prometheus_client endpoint and answers queries with its values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.infra.fixtures import StartPrometheus
from tests.infra.processes import free_port


def test_prometheus_scrapes_a_prometheus_client_endpoint(prometheus: StartPrometheus) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("soar_test_reward", "A value the test sets", ["run"], registry=registry)
    gauge.labels(run="demo").set(0.25)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prom = prometheus([f"127.0.0.1:{port}"], job="soar-test")

        up = prom.query('up{job="soar-test"}', until=lambda r: bool(r) and r[0]["value"][1] == "1")
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{port}"
        result = prom.query('soar_test_reward{run="demo"}')
        assert float(result[0]["value"][1]) == 0.25

        # A later change shows up too: the target is scraped continuously, every second.
        gauge.labels(run="demo").set(1.5)
        result = prom.query(
            'soar_test_reward{run="demo"}', until=lambda r: bool(r) and r[0]["value"][1] == "1.5"
        )
        assert result[0]["metric"]["job"] == "soar-test"
    finally:
        server.shutdown()
        thread.join(timeout=5)
