"""SQLite's errors as the storage layer's (daemon/storage/errors.py): the one place that
catches apsw.Error for callers. Every public method of the backend goes through `translating`."""

import functools
import inspect

import apsw

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
    """`fn` (a function or a generator function) raising StorageError for apsw.Error. (A
    wrapper per call: the store's methods are called per file, never per line.)"""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                return (yield from fn(*args, **kwargs))
            except apsw.Error as e:
                raise storage_error(e) from e
        generator.translates = True      # read by _translates
        return generator

    @functools.wraps(fn)
    def function(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except apsw.Error as e:
            raise storage_error(e) from e
    function.translates = True      # read by _translates
    return function


def translating_methods(cls):
    """The class, with its public methods (and __init__), inherited ones included,
    translating apsw.Error at the edge."""
    # Collected before any is set: wrapping while walking would wrap the class's own (just
    # wrapped) attributes a second time. A method that translates already (batch, savepoint:
    # `translating` under contextmanager) is left as it is.
    public = {name: value for klass in reversed(cls.__mro__[:-1]) for name, value in vars(klass).items()
              if inspect.isfunction(value) and (not name.startswith("_") or name == "__init__")
              and getattr(cls, name) is value and not _translates(value)}
    for name, value in public.items():
        setattr(cls, name, translating(value))
    return cls


def _translates(fn) -> bool:
    while fn is not None:
        if getattr(fn, "translates", False):
            return True
        fn = getattr(fn, "__wrapped__", None)
    return False
