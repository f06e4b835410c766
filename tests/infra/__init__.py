"""Real infrastructure for tests: a Kubernetes control plane built from source, a node agent that
runs pods as local processes, moto's S3 server and Prometheus. See ``tests.infra.fixtures``."""
