"""How reev-api is served: one listening socket that no other process can share, connections
per worker, how long an idle one stays open, and the file limit they need.

Granian takes a connection only while it holds one of `backpressure` permits per worker, and
keeps the permit for the connection's life: connections past it wait in the kernel's listen
queue. So the permits must stay below the worker's file limit (past it, accept() fails with
EMFILE), well above what real clients hold (a browser keeps up to 6 connections, a stream
one each), and idle connections must not keep theirs: hyper's header read timeout, with
HTTP/1 only, closes a connection that has not sent a whole request within the time, whether
it is new and silent (slowloris), half-sent, or idle between keep-alive requests. (With
HTTP/2 also on offer, hyper waits without a limit for the first bytes that tell the two apart;
browsers speak HTTP/2 only over TLS, which this API does not serve.)
"""

import logging
import resource
import socket

from granian import Granian
from granian._granian import SocketHolder
from granian.constants import HTTPModes, Loops
from granian.http import HTTP1Settings

log = logging.getLogger("reev.api")

# Seconds a connection may sit without a whole request before the server closes it: between
# keep-alive requests (the UI polls every 2 s, so its connections stay open), and for a new
# one. 5 s, as uvicorn's and Node's keep-alive timeout and Apache's KeepAliveTimeout. A
# reverse proxy in front must keep its idle upstream connections for less than this.
KEEP_ALIVE_SECONDS = 5
# Connections a worker holds at once, when the file limit allows it: 4 × Granian's default of
# 1 024, which one client filled with idle connections. Streams are a small share of it
# (--max-streams, 100). What an idle connection costs: docs/api.md.
MAX_CONNECTIONS_PER_WORKER = 4096
# Files a worker needs besides its connections: a SQLite connection (database, -wal, -shm) for
# the event loop and each of anyio's 40 worker threads, the listening socket, the runtime's
# epoll and wake-up descriptors, the interpreter's own.
FD_RESERVE = 256
# Seconds a worker has to stop once told to, before the server kills it. Streams end at once
# on SIGTERM and a query runs at most --query-timeout, so a worker stops well within this;
# one told to stop while it was starting may not (granian 2.8 misses a stop signal that
# arrives before its worker serves) and would hold the stop until systemd's TimeoutStopSec.
WORKER_STOP_SECONDS = 5
# asyncio's loop, named, not Granian's "auto": with uvloop installed (uvicorn[standard] brings
# it) auto picks it, and the event streams' end on SIGTERM (api/stream.py) chains to the
# server's handler through asyncio's loop; under uvloop a worker had to be killed.
EVENT_LOOP = Loops.asyncio


def raise_file_limit() -> int:
    """Raise the soft limit on open files as far as MAX_CONNECTIONS_PER_WORKER needs, where the
    hard limit allows (workers inherit it); returns the soft limit now. (granian 2.8 raises it
    to the hard limit when imported; this does not count on that.)"""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_CONNECTIONS_PER_WORKER + FD_RESERVE
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def connections_per_worker(file_limit: int) -> int:
    """The connections one worker takes at once: MAX_CONNECTIONS_PER_WORKER, or fewer when the
    file limit leaves less room than that beside FD_RESERVE."""
    if file_limit == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS_PER_WORKER
    return max(1, min(MAX_CONNECTIONS_PER_WORKER, file_limit - FD_RESERVE))


def server_settings() -> dict:
    """Granian's settings for the limits above (keyword arguments of granian.Granian)."""
    file_limit = raise_file_limit()
    connections = connections_per_worker(file_limit)
    if connections < MAX_CONNECTIONS_PER_WORKER:
        log.warning("the open-files limit (%d) allows only %d connections per worker (%d wanted):"
                    " raise LimitNOFILE", file_limit, connections, MAX_CONNECTIONS_PER_WORKER)
    return {"http": HTTPModes.http1, "loop": EVENT_LOOP, "backpressure": connections,
            "http1_settings": HTTP1Settings(header_read_timeout=KEEP_ALIVE_SECONDS * 1000),
            "workers_kill_timeout": WORKER_STOP_SECONDS}


# ---------------------------------------------------------------------- the listening socket

# Connections the kernel holds for the workers to take (Granian's default)
BACKLOG = 1024


def listen(host: str, port: int) -> socket.socket:
    """The one socket the API listens on, bound by the server process before it starts its
    workers, which share it. On Linux Granian has each worker bind a socket of its own with
    SO_REUSEPORT, which lets any process of the same user bind the same address and port: a
    second reev-api started without a word and took every other connection, even serving
    another database. This one has no SO_REUSEPORT, so its bind fails (EADDRINUSE) while any
    socket listens there, SO_REUSEPORT or not, and no socket can join it afterwards: there is
    no moment at which two servers could both look, find the port free and share it.
    (SO_REUSEADDR only lets a restart bind while the last one's connections are in TIME_WAIT;
    Linux never lets it share a listening port.)"""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)      # as the workers' runtime (tokio) takes it
    return sock


class Server(Granian):  # type: ignore[valid-type, misc]  # granian: Granian is MPServer or MTServer, picked at import
    """Granian serving the socket `listen` made, shared by its workers. Granian has no option
    for that: this replaces the method that makes its sockets with what it does itself on the
    systems without SO_REUSEPORT (pyproject pins the Granian minor version it was written for;
    tests/test_api_serving.py fails if a version makes sockets some other way)."""

    def __init__(self, *args, listener: socket.socket, **kwargs):
        super().__init__(*args, backlog=BACKLOG, **kwargs)
        self.listener = listener

    def _init_shared_socket(self):
        self._ssp = None                  # (no socket for each worker to build)
        self._sfd = self.listener.fileno()
        self._shd = SocketHolder(self._sfd, False, self.backlog)
        self._sso = self.listener         # what the workers inherit; closed when the server stops
