"""The daemon's storage seam: the interface (interface.py) that ingest.py, service.py and
stale.py use, its errors (errors.py), and its backends (sqlite/). docs/storage.md says where
each rule lives and why."""

from daemon.storage.errors import Busy, Corrupt, Full, Incompatible, StorageError, Unavailable
from daemon.storage.interface import NOT_LOOKED_UP, Store
from daemon.storage.records import Run

__all__ = ["NOT_LOOKED_UP", "Busy", "Corrupt", "Full", "Incompatible", "Run", "StorageError", "Store",
           "Unavailable"]
