"""How reev-api is served: connections per worker, how long an idle one stays open, the file
limit they need, and telling systemd READY=1 only once the port accepts connections.

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

import asyncio
import logging
import os
import resource
import socket

from granian.constants import HTTPModes, Loops
from granian.http import HTTP1Settings

from daemon.notify import Notifier

log = logging.getLogger("reev.api")

# Seconds a connection may sit without a whole request before the server closes it: between
# keep-alive requests (the UI polls every 2 s, so its connections stay open), and for a new
# one. 5 s, as uvicorn's and Node's keep-alive timeout and Apache's KeepAliveTimeout. A
# reverse proxy in front must keep its idle upstream connections for less than this.
KEEP_ALIVE_SECONDS = 5
# Connections a worker holds at once, when the file limit allows it: 4 × Granian's default of
# 1 024, which one client filled with idle connections. Streams are a small share of it
# (--max-streams, 100). An idle connection costs a worker about 9 KiB (3 000 of them: 27 MB).
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


# ---------------------------------------------------------------------- readiness

def listening_on(port: int) -> bool:
    """Whether this process holds a TCP socket listening on `port`. Each Granian worker binds
    its own (SO_REUSEPORT) after the app's startup hooks ran, so a worker's listening socket
    is the moment its connections are accepted."""
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:              # closed meanwhile (the listing's own descriptor, say)
            continue
        with sock:
            if (sock.family in (socket.AF_INET, socket.AF_INET6)
                    and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                    and sock.getsockname()[1] == port):
                return True
    return False


READY_WAIT_SECONDS = 60


async def ready_once_listening(port: int, notifier: Notifier):
    """READY=1 once this worker's socket listens on `port`: a connection made when systemd
    hears it is accepted. With several workers the first to listen tells it (NotifyAccess=all).
    A worker that never listens says nothing, and systemd's start timeout fails the unit."""
    deadline = asyncio.get_running_loop().time() + READY_WAIT_SECONDS
    while not listening_on(port):
        if asyncio.get_running_loop().time() > deadline:
            log.error("no socket listening on port %d after %d s: READY=1 not sent", port, READY_WAIT_SECONDS)
            return
        await asyncio.sleep(0.002)
    notifier.ready(f"serving on port {port}, pid {os.getpid()}")
