"""The cluster tier: a real control plane (tests/infra), a node agent running pods as local
processes, Prometheus, S3 on moto, and the operator under the chart's RBAC (tests/support/cluster:
the module-scoped `ns`, `operator` and `cluster` the operator test files share)."""

from tests.infra.fixtures import (  # noqa: F401  (this tier's fixtures and report hooks)
    control_plane,
    k8s_binaries,
    kube,
    namespace,
    node_agent,
    prometheus,
    prometheus_binary,
    pytest_report_header,
    pytest_runtest_makereport,
    s3_server,
)
from tests.support.cluster import cluster, ns, operator  # noqa: F401
