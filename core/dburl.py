"""The database target of both programs: a path (SQLite) or a libpq URL (PostgreSQL).

`--db`/`REEV_DB` alone chooses the backend: a value beginning `postgresql://` or `postgres://`
is a PostgreSQL URL (libpq's URL form, `?host=/socket/folder` included), anything else a path.
`shown()` is the one way a target appears in logs, status output and the health route: a URL
without its password (in the user part or as `?password=`)."""

import re
import urllib.parse
from pathlib import Path

SCHEMES = ("postgresql://", "postgres://")
# What libpq refuses to decode: a '%' without two hex digits after it, or %00. Its error then
# quotes the raw token, which may be the password, so such a URL is refused here first.
BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})|%00")


# What a URL meant for another backend or mistyped looks like: any scheme with `//`, or a
# `postgres:` / `postgresql:` without it or not in lower case (libpq knows only the two above,
# as written). As a path it would make a SQLite database in a folder named after the scheme.
NOT_A_PATH = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://|postgres(ql)?:", re.IGNORECASE)


def is_url(target: Path | str) -> bool:
    """The target names a PostgreSQL database (not a file)."""
    return isinstance(target, str) and target.startswith(SCHEMES)


def check_url(text: str) -> str:
    """A PostgreSQL URL as given, once its parts parse (ValueError says why not). libpq reads it
    again when connecting; what it alone can tell (a host not found) is an error then."""
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port      # noqa: B018  (raises on a port that is no number)
        urllib.parse.parse_qs(parts.query, strict_parsing=bool(parts.query))
    except ValueError as e:
        raise ValueError(f"{shown(text)!r} is not a PostgreSQL URL ({e})") from None
    if parts.fragment:
        raise ValueError(f"{shown(text)!r} is not a PostgreSQL URL (a '#' has no meaning in it)")
    if BAD_ESCAPE.search(text):
        raise ValueError(f"{shown(text)!r} is not a PostgreSQL URL (a '%' must begin an escape of two hex"
                         " digits other than %00: write a '%' itself as %25)")
    return text


def check_path(text: str) -> str:
    """A SQLite database's path as given, unless it looks like a URL (ValueError says so,
    naming no more than its scheme: the rest may hold a password)."""
    if NOT_A_PATH.match(text):
        raise ValueError(f"'{text.split(':', 1)[0]}:...' is not a PostgreSQL URL (postgresql:// or postgres://,"
                         " in lower case) and is no database path")
    return text


def shown(target: Path | str) -> str:
    """The target as logs and status output show it: a URL without its password."""
    if not is_url(target):
        return str(target)
    try:
        parts = urllib.parse.urlsplit(str(target))
    except ValueError:      # (unparsable: nothing of it is shown that could hold a password)
        return str(target).split("://", 1)[0] + "://(a URL that does not parse)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}{':***' if ':' in userinfo else ''}@{host}"
    query = "&".join(("password=***" if k == "password" else f"{k}={urllib.parse.quote(v, safe='/:,')}")
                     for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{parts.scheme}://{netloc}{parts.path}{'?' + query if query else ''}{fragment}"
