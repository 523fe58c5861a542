"""Settings of both programs, each declared once (name, flag, environment variable, type and
bounds, default, help): the flag and the variable go through the same check, and a bad value
of either is one line on stderr and exit status 2. The flag wins over the variable; an empty
variable counts as unset; surrounding whitespace is ignored in every value. Numbers are plain
ASCII decimals (no `_` separators, no other scripts' digits, no `inf` or `nan`), and every
number has an upper bound as well as a lower one. (Shared by the daemon and the API: imports
nothing of either.)"""

import argparse
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from core.dburl import check_path, check_url, is_url
from core.logs import LEVELS

Environ = Mapping[str, str]


class Setting(NamedTuple):
    name: str                       # the attribute of the parsed arguments
    flag: str
    env: str
    parse: Callable[[str], Any]     # text → value; ValueError says why not
    default: Any                    # a value, or a function of the environment giving one
    shown_default: str              # the default as --help and the README say it
    help: str
    metavar: str | None = None
    repeatable: bool = False        # the flag may be given again; the variable is comma-separated

    @property
    def bounds(self) -> str | None:
        """The range of a number ("0.1 to 86400"), as --help, the errors and the README say it."""
        return getattr(self.parse, "bounds", None)

    def default_value(self, environ: Environ):
        return self.default(environ) if callable(self.default) else self.default

    def value(self, text: str):
        """One value, from the option or the variable alike."""
        return self.parse(text.strip())

    def from_environment(self, environ: Environ):
        """The variable's value, parsed (None when unset, empty or blank)."""
        text = environ.get(self.env, "")
        if not text.strip():
            return None
        if self.repeatable:
            return [self.value(item) for item in text.split(",") if item.strip()]
        return self.value(text)


# ------------------------------------------------------------------------------ value types


SECONDS = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
WHOLE = re.compile(r"[+-]?[0-9]+")


def _bounded(parse: Callable[[str], Any], bounds: str) -> Callable[[str], Any]:
    parse.bounds = bounds      # type: ignore[attr-defined]  # read by Setting.bounds
    return parse


def seconds(minimum: float, maximum: float, inclusive: bool = True) -> Callable[[str], float]:
    """A number of seconds from `minimum` (or above it: not `inclusive`) to `maximum`."""
    bounds = f"{minimum:g} to {maximum:g}" if inclusive else f"more than {minimum:g}, up to {maximum:g}"

    def parse(text: str) -> float:
        if not SECONDS.fullmatch(text):
            raise ValueError(f"{text!r} is not a number of seconds ({bounds})")
        value = float(text)
        if not math.isfinite(value) or not (minimum <= value <= maximum) or (value == minimum and not inclusive):
            raise ValueError(f"{text!r} is out of range: seconds must be {bounds}")
        return value

    return _bounded(parse, bounds)


def integer(minimum: int, maximum: int) -> Callable[[str], int]:
    """A whole number from `minimum` to `maximum`."""
    bounds = f"{minimum} to {maximum}"

    def parse(text: str) -> int:
        if not WHOLE.fullmatch(text):
            raise ValueError(f"{text!r} is not a whole number ({bounds})")
        value = int(text)
        if not minimum <= value <= maximum:
            raise ValueError(f"{text!r} is out of range: from {bounds}")
        return value

    return _bounded(parse, bounds)


def working_directory() -> Path:
    """The working directory; ValueError when it has been deleted since the program was started
    from it (a relative path then means nothing)."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        raise ValueError("the working directory no longer exists (deleted after the shell entered it):"
                         " start from one that does") from None


def absolute_path(text: str) -> Path:
    """A path made absolute against the working directory now, so logs, answers and the
    worker processes all name the same file."""
    path = Path(text)
    return path if path.is_absolute() else working_directory() / path


def ip_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address (e.g. 127.0.0.1, ::1, 0.0.0.0)") from None


def log_level(text: str) -> str:
    """A level name in any case (`WARNING` and `warning` alike), as its lower-case name."""
    if text.lower() not in LEVELS:
        raise ValueError(f"{text!r} is not a log level (one of {', '.join(LEVELS)}, in any case)")
    return text.lower()


# ------------------------------------------------------------------------------ shared settings


def default_db_path(environ: Environ = os.environ) -> Path:
    """reev.db in systemd's $STATE_DIRECTORY (its first folder), else ./state/reev.db."""
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    return absolute_path(str(Path(state or "state") / "reev.db"))


def database_target(text: str) -> Path | str:
    """A PostgreSQL URL (postgresql:// or postgres://, core/dburl.py), kept as text; anything
    else that does not look like a URL a SQLite database's path, made absolute. Nothing else
    chooses the backend."""
    return check_url(text) if is_url(text) else absolute_path(check_path(text))


# Both programs': a SQLite file's path, or a PostgreSQL URL (daemon/config.py and api/config.py
# say what each does with it).
DB = Setting("db", "--db", "REEV_DB", database_target, default_db_path,
             "$STATE_DIRECTORY/reev.db under systemd, else state/reev.db", "the database: a file, or a URL",
             metavar="PATH|URL")
LOG_LEVEL = Setting("log_level", "--log-level", "REEV_LOG_LEVEL", log_level, "info", "info",
                    f"least severe level logged: {', '.join(LEVELS)}, in any case", metavar="LEVEL")


# ------------------------------------------------------------------------------ the command line


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line (what is wrong, and where to look), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_settings(parser: argparse.ArgumentParser, settings: Sequence[Setting], again: bool = False):
    """Add each setting's flag. `again`: a subcommand's copy of flags the main parser has too,
    so they may come on either side of the subcommand (it leaves them alone when absent)."""
    for s in settings:
        parser.add_argument(s.flag, dest=s.name, type=_argparse_type(s.value, s.parse.__name__), metavar=s.metavar,
                            action="append" if s.repeatable else "store",
                            default=argparse.SUPPRESS if again else None,
                            help=f"{s.help}{f' ({s.bounds})' if s.bounds else ''}; env {s.env},"
                                 f" default {s.shown_default}")


def resolve(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Sequence[Setting],
            environ: Environ = os.environ):
    """Give each setting not set by its flag the value of its variable, else its default. A
    program started from a working directory that is gone stops here: its relative paths,
    defaults included, would name nothing (and the server library asks for it too)."""
    try:
        working_directory()
    except ValueError as e:
        parser.error(str(e))
    for s in settings:
        if getattr(args, s.name, None) is not None:
            continue
        try:
            value = s.from_environment(environ)
        except ValueError as e:
            parser.error(f"{s.env}: {e}")
        setattr(args, s.name, value if value is not None else s.default_value(environ))


def _argparse_type(value: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """argparse prints the reason of an ArgumentTypeError, not of a ValueError."""
    def checked(text: str):
        try:
            return value(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    checked.__name__ = name
    return checked
