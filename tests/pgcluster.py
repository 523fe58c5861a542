"""A throwaway PostgreSQL cluster: the one implementation that .ci/run, the tests' fixtures
(tests/conftest.py) and `make fleet` start and stop.

    python3 tests/pgcluster.py bindir       where the server's programs are (status 1: none)
    python3 tests/pgcluster.py start DIR    create the cluster in DIR (first time) and start it;
                                            prints its URL (superuser `postgres`, database `postgres`)
    python3 tests/pgcluster.py stop DIR     stop it (nothing to do when it is not running)

DIR holds data/, server.log and socket/, the Unix socket it listens on: no TCP port
(listen_addresses = ''). Local connections are trusted, so DIR and the socket are its owner's
only (0700): as root, that is `postgres`, who runs initdb and pg_ctl (initdb refuses root);
root still connects. The settings are a test machine's: modest memory, connections for the
suite, WAL for streaming standbys (pg_basebackup -R, `make_standby`), pg_stat_statements
loaded and created in the `postgres` database (it sees every database's statements).

Standard library only: .ci/run runs it with the system's Python before the virtual environment
exists.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

SERVER_USER = "postgres"      # the OS user that runs the server when we are root, and the superuser
PROGRAMS = ("initdb", "pg_ctl", "postgres", "pg_basebackup", "psql")
TIMEOUT = 60                  # seconds pg_ctl waits for a start or a stop
SOCKET_PATH_MAX = 107         # sun_path, less the terminating NUL

# postgresql.conf additions (later lines win over initdb's). fsync and synchronous_commit keep
# their defaults (on): a test that kills the server (pg_ctl restart -m immediate) must find every
# acknowledged commit, as in production.
SETTINGS = """
listen_addresses = ''
unix_socket_directories = '{socket}'
unix_socket_permissions = 0700
port = 5432
max_connections = 200                 # several daemons and API workers per test, and the fixtures
shared_buffers = 64MB
wal_level = replica                   # (the default; a standby depends on it)
max_wal_senders = 10
wal_keep_size = 128MB                 # a standby catches up from this, without a slot to drop
hot_standby = on
hot_standby_feedback = on             # a standby's long reads are not cancelled by the primary's vacuum
shared_preload_libraries = 'pg_stat_statements'
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
"""


class ClusterError(RuntimeError):
    """A PostgreSQL program failed: the message has its command line and output."""


# ------------------------------------------------------------------------------ the programs

def _version_key(path: Path) -> tuple:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))


def bindir() -> Path | None:
    """The folder of the server's programs: Debian's newest /usr/lib/postgresql/<version>/bin,
    else the folder of an `initdb` on PATH (followed through symbolic links), if it has them all."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if all(os.access(folder / p, os.X_OK) for p in PROGRAMS):
            return folder
    return None


def _program(name: str) -> str:
    folder = bindir()
    if folder is None:
        raise ClusterError("PostgreSQL's server programs are not installed (Debian: apt-get install postgresql)")
    return str(folder / name)


def _as_server_user() -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []


def _environment() -> dict[str, str]:
    # libpq's settings of the caller (PGHOST, PGDATABASE, ...) must not redirect these programs.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _run(args: list[str], cwd: Path, as_server: bool = True, ok: tuple[int, ...] = (0,)) -> int:
    """Run a program (as the server's user when `as_server`) in `cwd`, which that user can
    enter (the server's programs refuse a working folder they cannot read). Returns its exit
    status, one of `ok`."""
    command = (_as_server_user() if as_server else []) + args
    proc = subprocess.run(command, cwd=cwd, env=_environment(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=TIMEOUT + 30)
    if proc.returncode not in ok:
        raise ClusterError(f"{' '.join(command)}: exit status {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc.returncode


def _own(folder: Path):
    """Make `folder` the server user's alone (created if missing)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_USER)
        os.chown(folder, user.pw_uid, user.pw_gid)


# ------------------------------------------------------------------------------ URLs

def database_url(url: str, dbname: str) -> str:
    """The same libpq URL naming another database. (Not urlunsplit: it drops the empty host
    of `postgresql:///db?host=/socket/folder`.)"""
    parts = urllib.parse.urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}/{urllib.parse.quote(dbname)}{query}"


def dbname_of(url: str) -> str:
    """The database a libpq URL names."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.lstrip("/"))


# ------------------------------------------------------------------------------ a cluster

@dataclass(frozen=True)
class Cluster:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        query = urllib.parse.urlencode({"host": str(self.socket_dir), "user": SERVER_USER}, safe="/")
        return f"postgresql:///{urllib.parse.quote(dbname)}?{query}"

    def running(self) -> bool:
        """Whether its server runs (pg_ctl status: 3 not running, 4 no cluster there)."""
        return _run([_program("pg_ctl"), "status", "-D", str(self.data)], cwd=self.root, ok=(0, 3, 4)) == 0

    def ctl(self, *args: str):
        """pg_ctl on this cluster, waiting for it to finish (start, stop, restart -m immediate).
        A failure says what the server logged last (the folder may be deleted next)."""
        try:
            _run([_program("pg_ctl"), *args, "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(TIMEOUT)],
                 cwd=self.root)
        except ClusterError as e:
            tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise ClusterError(f"{e}\n{self.log}:\n{tail}") from None

    def _prepare(self):
        """The folder, the server user's, before anything is made in it."""
        if len(str(self.socket_dir / ".s.PGSQL.5432")) > SOCKET_PATH_MAX:
            raise ClusterError(f"{self.socket_dir}: too long a path for a Unix socket; use a shorter folder")
        _own(self.root)

    def _configure(self):
        """Our settings after initdb's (or pg_basebackup's copy of the primary's)."""
        _own(self.socket_dir)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(SETTINGS.format(socket=self.socket_dir))

    def psql(self, sql: str, dbname: str = "postgres"):
        _run([_program("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.url(dbname),
                     "-c", sql], cwd=self.root, as_server=False)


def start(root: Path) -> Cluster:
    """Start the cluster in `root`, created there first when it is not yet (see the module)."""
    cluster = Cluster(Path(root).absolute())
    cluster._prepare()
    created = not (cluster.data / "PG_VERSION").exists()
    if created:
        _run([_program("initdb"), "-D", str(cluster.data), "-U", SERVER_USER, "--auth=trust",
              "--no-locale", "-E", "UTF8", "--no-instructions"], cwd=cluster.root)
        cluster._configure()
    if not cluster.running():
        cluster.ctl("start")
    if created:
        cluster.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return cluster


def stop(root: Path):
    """Stop the cluster in `root` if it runs: fast (sessions are ended), else immediately."""
    cluster = Cluster(Path(root).absolute())
    if not cluster.running():
        return
    try:
        cluster.ctl("stop", "-m", "fast")
    except ClusterError:
        cluster.ctl("stop", "-m", "immediate")


def make_standby(primary_url: str, root: Path) -> Cluster:
    """A streaming standby of the server at `primary_url` (a superuser's URL), made in the empty
    or missing folder `root` with pg_basebackup -R (which writes standby.signal and the primary's
    connection settings), listening on its own socket, started: read-only hot standby."""
    standby = Cluster(Path(root).absolute())
    standby._prepare()
    _run([_program("pg_basebackup"), "-d", primary_url, "-D", str(standby.data), "-R", "-X", "stream",
          "-c", "fast"], cwd=standby.root)
    standby._configure()
    standby.ctl("start")
    return standby


def main(argv: list[str]) -> int:
    if argv == ["bindir"]:
        folder = bindir()
        if folder is None:
            print("PostgreSQL's server programs are not installed", file=sys.stderr)
            return 1
        print(folder)
        return 0
    if len(argv) == 2 and argv[0] in ("start", "stop"):
        try:
            if argv[0] == "start":
                print(start(Path(argv[1])).url())
            else:
                stop(Path(argv[1]))
        except ClusterError as e:
            print(f"pgcluster {argv[0]}: {e}", file=sys.stderr)
            return 1
        return 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
