"""Shared test setup: the real-infrastructure fixtures, and one torch thread per process.

Tiny models run their small matrix products fastest on one thread; two threads on a busy 2-core
machine made them 10-50x slower. Stage subprocesses set their own count from the spec.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

pytest_plugins = ["tests.infra.fixtures", "tests.operator_fixtures"]
