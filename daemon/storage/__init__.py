"""The daemon's storage: see interface.py."""

from daemon.storage.errors import Busy, Corrupt, Full, Incompatible, StorageError, Unavailable

__all__ = ["Busy", "Corrupt", "Full", "Incompatible", "StorageError", "Unavailable"]
