"""Settings of both programs, each declared once (name, flag, environment variable, type and
bounds, default, help): the flag and the variable go through the same check, and a bad value
of either is one line on stderr and exit status 2. The flag wins over the variable; an empty
variable counts as unset. (Shared by the daemon and the API: imports nothing of either.)"""

import argparse
import ipaddress
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from daemon.logs import LEVELS

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

    def default_value(self, environ: Environ):
        return self.default(environ) if callable(self.default) else self.default

    def from_environment(self, environ: Environ):
        """The variable's value, parsed (None when unset or empty)."""
        text = environ.get(self.env, "")
        if not text:
            return None
        if self.repeatable:
            return [self.parse(item.strip()) for item in text.split(",") if item.strip()]
        return self.parse(text)


# ------------------------------------------------------------------------------ value types


def seconds(minimum: float, inclusive: bool = True) -> Callable[[str], float]:
    """A finite number of seconds of at least (or above) `minimum`."""
    bound = f"{'at least' if inclusive else 'more than'} {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number of seconds ({bound})") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise ValueError(f"{text!r} is out of range: seconds must be {bound}")
        return value

    return parse


def integer(minimum: int, maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number (from {minimum} to {maximum})") from None
        if not minimum <= value <= maximum:
            raise ValueError(f"{text!r} is out of range: from {minimum} to {maximum}")
        return value

    return parse


def absolute_path(text: str) -> Path:
    """A path made absolute against the working directory now, so logs, answers and the
    worker processes all name the same file."""
    return Path(text).absolute()


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
    return (Path(state or "state") / "reev.db").absolute()


DB = Setting("db", "--db", "REEV_DB", absolute_path, default_db_path,
             "$STATE_DIRECTORY/reev.db under systemd, else state/reev.db", "the database file", metavar="PATH")
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
        parser.add_argument(s.flag, dest=s.name, type=_argparse_type(s.parse), metavar=s.metavar,
                            action="append" if s.repeatable else "store",
                            default=argparse.SUPPRESS if again else None,
                            help=f"{s.help}; env {s.env}, default {s.shown_default}")


def resolve(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Sequence[Setting],
            environ: Environ = os.environ):
    """Give each setting not set by its flag the value of its variable, else its default."""
    for s in settings:
        if getattr(args, s.name, None) is not None:
            continue
        try:
            value = s.from_environment(environ)
        except ValueError as e:
            parser.error(f"{s.env}: {e}")
        setattr(args, s.name, value if value is not None else s.default_value(environ))


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse prints the reason of an ArgumentTypeError, not of a ValueError."""
    def checked(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    checked.__name__ = parse.__name__
    return checked
