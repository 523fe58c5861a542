"""One log format for both programs and everything running in them (Granian's server and its
workers, the libraries, uncaught exceptions): one line per record, its traceback if any on
continuation lines; under journald a `<N>` priority on every line and no timestamp."""

import logging
import logging.config
import os
import sys
import threading

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}

# syslog priorities, for journald's `<N>` line prefix
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

# What a log line must not contain, or a file name could start a line of its own: the C0 and C1
# controls, DEL, and Unicode's line and paragraph separators.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_ESCAPES |= {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}

CONTINUATION = "  | "      # starts each line of a record's traceback; a record's first line never does


def escape(text: str) -> str:
    """`text` on one line, its control characters written as escapes."""
    return text.translate(_ESCAPES)


class LineFormatter(logging.Formatter):
    """A record is one line (message and arguments escaped); its traceback and stack, if any,
    follow as continuation lines, each escaped and starting with CONTINUATION."""

    def __init__(self, journal: bool = False):
        # journald stamps lines itself and reads the priority from a `<N>` prefix on each.
        super().__init__("%(name)s: %(message)s" if journal else "%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        lines = [escape(self.formatMessage(record))]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for extra in (record.exc_text, record.stack_info and self.formatStack(record.stack_info)):
            if extra:
                lines += [CONTINUATION + escape(line) for line in extra.split("\n")]
        if self.journal:
            prefix = f"<{_PRIORITY.get(record.levelno, 6)}>"
            return "\n".join(prefix + line for line in lines)
        return "\n".join(lines)


def writing_to_journal() -> bool:
    """True when stderr is the journal stream systemd set up ($JOURNAL_STREAM is dev:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def logging_config(level: str) -> dict:
    """The logging setup of both programs, also handed to Granian for its own loggers and its
    worker processes. `level` is one of LEVELS."""
    numeric = LEVELS[level]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": {"()": LineFormatter, "journal": writing_to_journal()}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": numeric},
        "loggers": {
            # watchdog logs every inotify event at debug level: far too much even for our debug.
            "watchdog": {"level": max(numeric, logging.INFO)},
            "_granian": {"level": numeric, "handlers": [], "propagate": True},
            "granian.access": {"level": logging.WARNING, "handlers": [], "propagate": True},
        },
    }


def setup_logging(level: str):
    """Configure logging, and send what would otherwise reach stderr in a format of its own
    through it: uncaught exceptions (of the main thread and of other threads) and warnings."""
    logging.config.dictConfig(logging_config(level))
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(exc_type, exc, tb):
    logging.getLogger("reev").critical("uncaught %s: the program stops", exc_type.__name__,
                                       exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs):
    if issubclass(args.exc_type, SystemExit):      # as threading's own hook: not an error
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("reev").critical("uncaught %s in thread %s", args.exc_type.__name__, name,
                                       exc_info=args.exc_value)
