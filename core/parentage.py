"""A child process must not outlive the process that started it (shared by the daemon and the API)."""

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1              # prctl(2)


def die_with_parent(parent_pid: int):
    """A child whose parent is killed outright (SIGKILL leaves it no time to stop its children)
    would go on alone: have Linux SIGKILL it when its parent goes, and go now if that has
    already happened. SIGKILL, not SIGTERM: a signal that can be handled lands in whatever handler
    the child has then (a server's worker runs the server's own until its event loop installs
    one; then a graceful stop that waits for open event streams, which nobody ends or times out
    once the parent is gone), and the child went on serving the port alone. Nothing of a child
    here needs a clean stop: the API's workers only read, the read worker only reads files."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):    # not Linux: nothing to ask for
        return
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)
