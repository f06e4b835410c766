"""Module-scoped fixtures the operator test files share: a namespace, a running operator under
the chart's RBAC, and a client for the runs in that namespace. A test file that needs another
operator (other settings, other namespace) defines its own fixture of the same name."""

from collections.abc import Iterator

import pytest

from tests.infra.controlplane import Kube
from tests.infra.node_agent import NodeAgent
from tests.operator_harness import Cluster, Operator, module_namespace, running_operator


@pytest.fixture(scope="module")
def ns(kube: Kube, node_agent: NodeAgent) -> Iterator[str]:
    with module_namespace(kube) as namespace:
        yield namespace


@pytest.fixture(scope="module")
def operator(kube: Kube, ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    with running_operator(kube, ns, tmp_path_factory.mktemp("operator")) as op:
        yield op


@pytest.fixture(scope="module")
def cluster(kube: Kube, ns: str, operator: Operator) -> Iterator[Cluster]:
    c = Cluster(kube, ns)
    yield c
    c.close()
