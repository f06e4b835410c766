"""The contract between the layers: what a stage's exit code means, how an executor tells a stage
its index, the Kubernetes names of the SoarRun API, and the phases a run goes through.

The CLI, the local executor, the operator and the tests all read these names from here
(docs/design.md, "Layers and the contract between them").
"""

import os
from collections.abc import Mapping
from enum import StrEnum

# ------------------------------------------------------------------------------------ exit codes
# A stage's exit code tells its executor whether running the same command again can help.
EXIT_OK = 0
EXIT_TRANSIENT = 1  # something transient or unexpected failed: retry
EXIT_PERMANENT = 2  # the input is wrong (manifest, data, a model that ignores the format): no retry
EXIT_INTERRUPTED = 130  # Ctrl-C on `soar run`: run the same command again to resume
EXIT_TERMINATED = 143  # SIGTERM (128 + 15): the pod was asked to stop (deleted, evicted, preempted)

# --------------------------------------------------------------------------------- stage index
# Which student an indexed stage is: `--index`, or this variable, which the Job controller sets
# in the pods of an Indexed Job.
STAGE_INDEX_ENV = "JOB_COMPLETION_INDEX"
# Set in stage pods (the downward API's metadata.name): `soar stage` then archives its own output
# to the run store under this pod's name (soar/pod_log.py).
POD_NAME_ENV = "SOAR_POD_NAME"


def stage_index(flag: int | None, env: Mapping[str, str] = os.environ) -> int | None:
    """The `--index` flag if given, else the Indexed Job's completion index, else None."""
    if flag is not None:
        return flag
    value = env.get(STAGE_INDEX_ENV)
    return int(value) if value else None


# ---------------------------------------------------------------------------------- the CRD API
GROUP = "soar.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SoarRun"
PLURAL = "soarruns"
SINGULAR = "soarrun"
SHORT_NAME = "soar"

# Labels on every Job (and its pods) of a run; the operator finds a run's Jobs by LABEL_RUN.
LABEL_RUN = f"{GROUP}/run"
LABEL_STEP = f"{GROUP}/step"
LABEL_STAGE = f"{GROUP}/stage"
LABEL_ATTEMPT = f"{GROUP}/attempt"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"  # copied from the run to its Jobs
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"  # Kueue WorkloadPriorityClass, copied too
# kopf keeps its bookkeeping on the run under our group, not kopf.zalando.org.
FINALIZER = f"{GROUP}/finalizer"
LAST_HANDLED_ANNOTATION = "last-handled-configuration"


# --------------------------------------------------------------------------------------- phases
class Phase(StrEnum):
    """status.phase of a SoarRun; every module that names a phase uses these."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)
