"""systemd's notify protocol (sd_notify), without a dependency: a few datagrams on the
AF_UNIX socket named by $NOTIFY_SOCKET. Silent when that variable is not set."""

import os
import socket
import time


class Notifier:
    def __init__(self, environ=os.environ):
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):             # abstract namespace
            address = "\0" + address[1:]
        self.address = address or None
        self.socket = None
        if self.address:
            self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        wanted = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        # Pet the watchdog at half its interval, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval = int(usec) / 2e6 if wanted and self.socket else None
        self._next_watchdog = 0.0

    @property
    def enabled(self) -> bool:
        return self.socket is not None

    def send(self, *fields: str):
        if self.socket is None:
            return
        try:
            self.socket.sendto("\n".join(fields).encode(), self.address)
        except OSError:
            pass    # systemd went away or the socket is full: never fatal for the service

    def ready(self, status: str | None = None):
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str):
        self.send(f"STATUS={text}")

    def reloading(self):
        # MONOTONIC_USEC lets systemd ≥ 253 tell this reload from an older one.
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self):
        self.send("STOPPING=1")

    def watchdog_due(self) -> float | None:
        """Seconds until the next WATCHDOG=1 is due (None: no watchdog)."""
        if self.watchdog_interval is None:
            return None
        return max(0.0, self._next_watchdog - time.monotonic())

    def watchdog(self):
        """Call from the loop that does the work: a stuck loop stops petting, and systemd restarts it."""
        if self.watchdog_interval is None:
            return
        now = time.monotonic()
        if now >= self._next_watchdog:
            self.send("WATCHDOG=1")
            self._next_watchdog = now + self.watchdog_interval
