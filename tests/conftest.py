"""Shared test setup: one torch thread per process.

Tiny models run their small matrix products fastest on one thread; two threads on a busy 2-core
machine made them 10-50x slower. Stage subprocesses set their own count from the spec.

Fixtures live with the tier that needs them: tests/integration/conftest.py (S3 on moto, the
trained tiny model) and tests/cluster/conftest.py (control plane, node agent, Prometheus, the
operator); tests/unit needs none. Shared builders are in tests/support/.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
