"""The storage layer's errors: what the service loop, `reev-ingestd` and its operator commands
catch, whatever the engine behind the store. A backend translates its engine's errors into
these at its edge (daemon/storage/sqlite/errors.py for SQLite), so that no caller names an
engine's exception.

The live loop retries every StorageError: the batch is rolled back (no checkpoint moved without
its rows), the loop backs off and tries again; a --once run retries those that waiting mends
(Busy, Unavailable) for a while and stops at the others (exit 1: daemon/cli.py); a start
waits for an Unreachable server. daemon/backoff.py has the delays. The subclasses say what
happened.
"""

import functools
import inspect
from collections.abc import Callable


class StorageError(Exception):
    """The database failed: nothing of the unit of work in hand was committed.

    str(error) is the engine's own message; `engine_error` its name for the error (for the log:
    "database error (FullError: database or disk is full)")."""

    def __init__(self, message: str, engine_error: str = ""):
        super().__init__(message)
        self.engine_error = engine_error or type(self).__name__


class Unavailable(StorageError):
    """The database cannot be opened or reached now: missing, no permission, an I/O error,
    read-only, the server gone (it may be back later)."""


class Unreachable(Unavailable):
    """The database server could not be reached, or does not take connections now (starting,
    shutting down): waiting mends it. Not a server that answers and refuses (a wrong password,
    a database or role that does not exist): that one is Unavailable, for an operator to mend."""


class Busy(StorageError):
    """Another connection holds the database (or the rows) for longer than the store waits."""


class Full(StorageError):
    """No space left for the database (or its journal) to grow."""


class Corrupt(StorageError):
    """The database file is damaged, or is no database at all."""


class Incompatible(StorageError):
    """The database is not one this daemon may write: another program's, or a newer schema's.
    Left as it is."""


class NotOwned(Exception):
    """The file names something another source owns in a database several daemons write (an
    execution id created by another host's files): an ingest error on this file, not a failure
    of the database. str(error) is the reason recorded."""


def translating(fn, engine_error: type[BaseException], convert: Callable[[BaseException], StorageError]):
    """`fn` (a function or a generator function) raising `convert(e)` for the engine's errors
    (`engine_error`). (A wrapper per call: the stores' methods are called per file, never per line.)"""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                return (yield from fn(*args, **kwargs))
            except engine_error as e:
                raise convert(e) from e
        generator.translates = True      # type: ignore[attr-defined]  # read by _translates
        return generator

    @functools.wraps(fn)
    def function(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except engine_error as e:
            raise convert(e) from e
    function.translates = True      # type: ignore[attr-defined]  # read by _translates
    return function


def translating_methods(cls, wrap: Callable):
    """The class, with its public methods (and __init__), inherited ones included, wrapped by
    `wrap` (a backend's `translating`)."""
    # Collected before any is set: wrapping while walking would wrap the class's own (just
    # wrapped) attributes a second time. A method that translates already (batch, savepoint:
    # `translating` under contextmanager) is left as it is.
    public = {name: value for klass in reversed(cls.__mro__[:-1]) for name, value in vars(klass).items()
              if inspect.isfunction(value) and (not name.startswith("_") or name == "__init__")
              and getattr(cls, name) is value and not _translates(value)}
    for name, value in public.items():
        setattr(cls, name, wrap(value))
    return cls


def _translates(fn) -> bool:
    while fn is not None:
        if getattr(fn, "translates", False):
            return True
        fn = getattr(fn, "__wrapped__", None)
    return False
