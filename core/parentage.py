"""A child process must not outlive the process that started it (shared by the daemon and the API)."""

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1              # prctl(2)


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM):
    """A child whose parent is killed outright (SIGKILL leaves it no time to stop its children)
    would go on alone: have Linux send it `sig` when its parent goes, and go now if that has
    already happened. `sig` gets its default action back first: a handler the child inherited
    (a server's worker, forked, runs the server's own until its event loop installs one) would
    take it and carry on."""
    if sig != signal.SIGKILL:
        signal.signal(sig, signal.SIG_DFL)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):    # not Linux: nothing to ask for
        return
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)
