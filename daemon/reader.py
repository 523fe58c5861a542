"""Reading files: opening only regular files, reading event logs line by line from a
checkpoint, and whole documents.

Modelled on Vector's file source: a checkpoint is the offset just after the last complete
line, and only the bytes of complete lines are consumed: a trailing partial line waits for its
newline. Whether a file is still the one a checkpoint describes is daemon/identity.py's.
"""

import os
import stat
from dataclasses import dataclass
from typing import NamedTuple

from daemon.identity import FINGERPRINT_BYTES, TAIL_BYTES, digest, fingerprint, split_fingerprint, tail_fingerprint

CHUNK_BYTES = 1 << 20
# Lines per read, whatever their size: a file of millions of tiny or empty lines must not turn
# one byte budget into millions of objects at once.
MAX_LINES_PER_READ = 16_384


@dataclass
class Checkpoint:
    """How far a file was read, and what it was then (its identity: daemon/identity.py)."""
    dev: int | None = None
    inode: int | None = None
    fingerprint: bytes | None = None
    fingerprint_len: int = 0
    offset: int = 0
    line_no: int = 0
    skipping: bool = False
    size: int = 0
    mtime_ns: int = 0
    content_hash: bytes | None = None
    state: str = "ok"


class Line(NamedTuple):
    number: int        # from 1
    offset: int        # byte offset of the line's first byte
    data: bytes | None # None: the line is over the limit (its bytes were not kept)


class NotAFile(Exception):
    """The path is missing, a directory, a FIFO, a symlink or otherwise not a regular file; or
    a regular file that cannot be opened (`retry`: permissions, I/O), which may change without
    the file changing (chmod, the daemon's user added to a group), so it is tried again."""

    VANISHED = "vanished"
    DIRECTORY = "a directory"

    def __init__(self, reason: str, retry: bool = False):
        super().__init__(reason)
        self.retry = retry


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """Open for reading without following symlinks or blocking on FIFOs; regular files only."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):     # (gone, or its folder is a file now)
        raise NotAFile(NotAFile.VANISHED) from None
    except OSError as e:
        # O_NOFOLLOW on a symlink says "too many levels of symbolic links": name what it is.
        try:
            what = _not_a_file(os.lstat(path).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            raise NotAFile(NotAFile.VANISHED) from None
        except OSError:
            what = None
        raise NotAFile(what or os_reason(e), retry=what is None) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotAFile(_not_a_file(st.st_mode) or "not a regular file")
    return fd, st


def os_reason(e: OSError) -> str:
    """An OSError in the words of an error reason: never its file name (the error is recorded
    under the file's path already, and a reason holds no absolute path)."""
    return e.strerror or type(e).__name__


def folder_is_there(path: str) -> bool:
    """Whether the folder of a path is a folder now. A file not found is gone only then: one
    whose folder is not there (deleted, renamed, a file now, a symlink to it dangling) is out of
    reach, and judged once its folder is back (the same files, a brief blip, are then read on)."""
    return os.path.isdir(os.path.dirname(path))


def what_is(mode: int) -> str | None:
    """What a file that is not a regular file is ("a directory", "a socket", ...); None for a
    regular file or a kind without a name."""
    for test, what in _KINDS:
        if test(mode):
            return what
    return None


_KINDS = ((stat.S_ISDIR, NotAFile.DIRECTORY), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def _not_a_file(mode: int) -> str | None:
    """Why a path that is not a regular file is not read, in the words of an error reason."""
    what = what_is(mode)
    if what is None or what == NotAFile.DIRECTORY:
        return what
    return f"{what} (not followed)" if stat.S_ISLNK(mode) else f"{what}, not a regular file"


def read_lines(fd: int, st: os.stat_result, cp: Checkpoint, max_line: int, budget: int,
               max_lines: int = MAX_LINES_PER_READ) -> tuple[list[Line], Checkpoint, bool]:
    """Complete lines after cp.offset (at most about `budget` bytes and `max_lines` lines), the
    advanced checkpoint, and whether a limit stopped the read before the end of the file.

    An over-long line comes back once as Line(data=None); its remaining bytes are skipped,
    even across calls (cp.skipping), without ever holding more than max_line bytes.
    """
    lines: list[Line] = []
    offset, line_no, skipping = cp.offset, cp.line_no, cp.skipping
    pending = b""                  # bytes of the line being assembled, from line_start
    line_start = offset
    pos = offset                   # next byte to read
    end = st.st_size
    first = b""                    # the file's first chunk, if this read starts there
    chunk, chunk_at = b"", 0       # the last chunk read, and where it starts
    # Stop after about `budget` bytes, but only once something was consumed: a line longer
    # than the budget must still complete, or the file would never advance.
    while pos < end and (pos - cp.offset < budget or offset == cp.offset):
        chunk, chunk_at = os.pread(fd, min(CHUNK_BYTES, end - pos), pos), pos
        if not chunk:
            break
        if chunk_at == 0:
            first = chunk
        start, full = 0, False
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                break
            if skipping:
                skipping = False
            else:
                data = pending + chunk[start:nl]
                line_no += 1
                lines.append(Line(line_no, line_start, data if len(data) <= max_line else None))
            pending = b""
            start = nl + 1
            line_start = offset = pos + start
            if len(lines) >= max_lines:
                full = True
                break
        if full:
            pos = offset                   # the rest of the chunk is read again next time
            break
        rest = chunk[start:]
        if not skipping:
            if len(pending) + len(rest) > max_line:
                # Over the limit with no newline yet: report it now, then discard to the newline.
                line_no += 1
                lines.append(Line(line_no, line_start, None))
                skipping, pending = True, b""
            else:
                pending += rest
        if skipping:
            offset = pos + len(chunk)      # discarded bytes are consumed
        pos += len(chunk)
    # The fingerprints, from the bytes just read where they hold them (two reads fewer a file).
    fp_len = min(FINGERPRINT_BYTES, end)
    head = split_fingerprint(cp.fingerprint)[0]
    if fp_len != cp.fingerprint_len or head is None:
        head = digest(first[:fp_len]) if len(first) >= fp_len else fingerprint(fd, fp_len)
    tail_at = max(0, offset - TAIL_BYTES)
    if chunk_at <= tail_at and offset <= chunk_at + len(chunk):
        tail = digest(chunk[tail_at - chunk_at:offset - chunk_at])
    else:
        tail = tail_fingerprint(fd, offset)
    new = Checkpoint(
        dev=st.st_dev, inode=st.st_ino, fingerprint=head + tail,
        fingerprint_len=fp_len, offset=offset, line_no=line_no, skipping=skipping,
        # size: how far the file was examined, so a read cut short by the budget is never
        # mistaken for an unchanged file by a later scan.
        size=min(pos, end), mtime_ns=st.st_mtime_ns, state="ok")
    return lines, new, pos < end


def read_document(fd: int, st: os.stat_result, max_bytes: int) -> bytes:
    """A whole file (session or benchmark), refusing absurd sizes."""
    if st.st_size > max_bytes:
        raise ValueError(f"file is {st.st_size} bytes, over the {max_bytes}-byte limit")
    chunks, pos = [], 0
    while True:
        # A byte more than the file had: fewer back is its end (one read for most files).
        want = st.st_size + 1 - pos if pos <= st.st_size else CHUNK_BYTES
        chunk = os.pread(fd, want, pos)
        chunks.append(chunk)
        pos += len(chunk)
        if pos > max_bytes:
            raise ValueError(f"file grew over the {max_bytes}-byte limit")
        if len(chunk) < want:
            return b"".join(chunks)

