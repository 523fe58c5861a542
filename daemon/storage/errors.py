"""The storage layer's errors: what the service loop, `reev-ingestd` and its operator commands
catch, whatever the engine behind the store. A backend translates its engine's errors into
these at its edge (daemon/storage/sqlite/errors.py for SQLite), so that no caller names an
engine's exception.

The live loop treats every StorageError alike today: the batch is rolled back (no checkpoint moved
without its rows), the loop backs off (0.1 s doubling to 30 s) and tries again (a --once run
stops at it and exits 1: daemon/cli.py). The subclasses say what happened, for the log and for
a caller that one day wants to tell them apart.
"""


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


class Busy(StorageError):
    """Another connection holds the database (or the rows) for longer than the store waits."""


class Full(StorageError):
    """No space left for the database (or its journal) to grow."""


class Corrupt(StorageError):
    """The database file is damaged, or is no database at all."""


class Incompatible(StorageError):
    """The database is not one this daemon may write: another program's, or a newer schema's.
    Left as it is."""
