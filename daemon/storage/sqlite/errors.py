"""SQLite's errors as the storage layer's (daemon/storage/errors.py): the one place that
catches apsw.Error for callers. Every public method of the backend goes through `translating`."""

import apsw

from daemon.storage import errors
from daemon.storage.errors import Busy, Corrupt, Full, StorageError, Unavailable

_KINDS: dict[type, type[StorageError]] = {     # the rest are StorageError itself
    apsw.BusyError: Busy, apsw.LockedError: Busy,
    apsw.FullError: Full,
    apsw.CorruptError: Corrupt, apsw.NotADBError: Corrupt,
    apsw.CantOpenError: Unavailable, apsw.IOError: Unavailable, apsw.ReadOnlyError: Unavailable,
    apsw.PermissionsError: Unavailable, apsw.ProtocolError: Unavailable, apsw.AuthError: Unavailable,
}


def storage_error(e: apsw.Error) -> StorageError:
    """The storage layer's error for an APSW one."""
    kind = next((k for c, k in _KINDS.items() if isinstance(e, c)), StorageError)
    return kind(str(e), type(e).__name__)


def translating(fn):
    """`fn` raising StorageError for apsw.Error."""
    return errors.translating(fn, apsw.Error, storage_error)


def translating_methods(cls):
    """The class, its public methods translating apsw.Error at the edge."""
    return errors.translating_methods(cls, translating)
