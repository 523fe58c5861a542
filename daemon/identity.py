"""File identity: is this still the file, and the content, that was read?

Modelled on Vector's file source, where fingerprinting is apart from reading: a file is
identified by device, inode and a fingerprint of its first bytes (`change_reason`, when a file
is opened to be read on from its checkpoint); whether it changed at all since it was last read
is told by the cheap stat comparison (`unchanged`), which the scans, the stale-run check and
the read worker's answers all go through.

The fingerprint also covers the bytes just before the checkpoint: a file truncated and
rewritten in place while nobody looked, longer than before and with the same first bytes
(the same first line), is then still noticed instead of being read on from the middle.
(daemon/reader.py computes both digests for the checkpoint it advances, from the bytes it has
just read where it can.)
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:     # (reader.py builds checkpoints with the digests below)
    from daemon.reader import Checkpoint

FINGERPRINT_BYTES = 256      # of the head of the file
TAIL_BYTES = 256             # before the checkpoint offset
DIGEST_BYTES = 16


class Seen(NamedTuple):
    """A file as a stat saw it, by the four fields a Checkpoint keeps of it too."""
    dev: int | None
    inode: int | None
    size: int
    mtime_ns: int


def seen(st: os.stat_result) -> Seen:
    return Seen(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def unchanged(st: os.stat_result, was: Checkpoint | Seen) -> bool:
    """The cheap test: the same file, with the same size and mtime, as when it was last read
    (`was`: its checkpoint, or how a stat saw it then)."""
    return (was.inode == st.st_ino and was.dev == st.st_dev and was.size == st.st_size
            and was.mtime_ns == st.st_mtime_ns)


def needs_look(st: os.stat_result, cp: Checkpoint | None) -> bool:
    """Whether a file needs a look: new, changed since its checkpoint, or left pending (a file
    that could not be read, or gone: tried again whatever its stat says)."""
    return cp is None or not (unchanged(st, cp) and cp.state in ("ok", "error"))


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest()


def fingerprint(fd: int, length: int) -> bytes:
    """Digest of the first `length` bytes."""
    return digest(os.pread(fd, length, 0))


def tail_fingerprint(fd: int, offset: int) -> bytes:
    """Digest of the TAIL_BYTES (or fewer) bytes just before `offset`."""
    start = max(0, offset - TAIL_BYTES)
    return digest(os.pread(fd, offset - start, start))


def split_fingerprint(value: bytes | None) -> tuple[bytes | None, bytes | None]:
    """(head digest, tail digest); checkpoints written before the tail existed have only a head."""
    if value is None or len(value) <= DIGEST_BYTES:
        return value, None
    return value[:DIGEST_BYTES], value[DIGEST_BYTES:]


def change_reason(fd: int, st: os.stat_result, cp: Checkpoint) -> str | None:
    """Why the file is no longer the one the checkpoint describes, or None if it still is (so it
    is read on from the checkpoint, whatever happened in between: gone and back, out of reach)."""
    if cp.inode is None:
        return None
    if (st.st_dev, st.st_ino) != (cp.dev, cp.inode):
        return "replaced"
    if cp.offset and cp.fingerprint is None:
        # an identity without what was read (a file first met unreadable, by earlier versions)
        return "its checkpoint holds no position to read on from"
    if st.st_size < cp.offset:
        return "truncated"
    head, tail = split_fingerprint(cp.fingerprint)
    if cp.fingerprint_len and fingerprint(fd, cp.fingerprint_len) != head:
        return "rewritten"
    if tail is not None and cp.offset and tail_fingerprint(fd, cp.offset) != tail:
        return "rewritten"
    return None
