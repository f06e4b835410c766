"""What can go wrong with a run store, shared by its backends (soar/store.py, soar/store_s3.py)."""


class StoreError(RuntimeError):
    """The store cannot be used; the message says which URI or key and why."""


class RecordError(ValueError):
    """A record in the store is missing or corrupt: retrying will not help. The message names the
    key and, where it can, how to recompute it."""
