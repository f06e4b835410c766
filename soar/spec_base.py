"""The base of every section of the SoarRun manifest: strict, camelCase, finite numbers."""

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    # Finite numbers only: a NaN threshold would promote at every step.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)
