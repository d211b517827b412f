"""Where kgx says what it is doing: the terminal (or whatever stderr is) and a log file.

Every stage reports through the ``kgx`` logger. :func:`setup` sends its lines to stderr and to
``OUT/kgx.log``; without it (kgx used as a library) nothing is printed below WARNING, so the
Python API and the server stay quiet. Progress lines (:class:`kgx.runtime.progress.Progress`) go
to the log file always, and to stderr only when stderr is not a terminal (a terminal shows a
bar).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO, cast

from kgx.outdir import LOG_FILE

LOGGER = logging.getLogger("kgx")


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on whatever ``sys.stderr`` is when a line is written (test runners swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


class _NotProgressOnTerminal(logging.Filter):
    """Drops progress lines from a handler whose stream is a terminal (a bar shows them)."""

    def __init__(self, stream: object | None) -> None:
        super().__init__()
        self.fixed = stream

    def filter(self, record: logging.LogRecord) -> bool:
        stream = self.fixed if self.fixed is not None else sys.stderr
        tty = bool(getattr(stream, "isatty", lambda: False)())
        return not (tty and getattr(record, "progress", False))


def setup(out: str | Path | None = None, *, stream: object = None) -> Path | None:
    """Send kgx's lines to ``stream`` (stderr) and, if ``out`` is given, to ``out/kgx.log``.

    Calling it again replaces the handlers it added before.

    Returns:
        The log file's path, or None.
    """
    for h in list(LOGGER.handlers):
        if getattr(h, "_kgx", False):
            LOGGER.removeHandler(h)
            h.close()
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False
    console: logging.Handler = logging.StreamHandler(cast(TextIO, stream)) \
        if stream is not None else _Stderr()
    console.setFormatter(logging.Formatter("%(message)s"))
    console.addFilter(_NotProgressOnTerminal(stream))
    console._kgx = True  # type: ignore[attr-defined]
    LOGGER.addHandler(console)
    if out is None:
        return None
    path = Path(out) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    file = logging.FileHandler(path, encoding="utf-8")
    file.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    file._kgx = True  # type: ignore[attr-defined]
    LOGGER.addHandler(file)
    return path


def info(message: str) -> None:
    """One line of what kgx is doing."""
    LOGGER.info(message)


def progress_line(message: str) -> None:
    """A periodic progress line (kept off a terminal, where a bar shows it)."""
    LOGGER.info(message, extra={"progress": True})


def quiet_transformers() -> None:
    """Keep transformers' and the hub's own progress bars and warnings out of kgx's output."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
