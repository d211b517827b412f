"""Worker processes that end with their parent.

A worker forked or spawned by kgx must not outlive the process that started it: after a
``kill -9`` of ``kgx extract``, an orphaned worker would go on reading the dump (and, forked, hold
the output folder's lock, since an ``flock`` belongs to every process that shares its file
description). :func:`die_with_parent` asks Linux to send the worker SIGKILL when its parent
dies (``PR_SET_PDEATHSIG``) and, where that is not available, starts a thread that watches the
parent's pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None) -> None:
    """End this process (SIGKILL) as soon as its parent dies.

    Args:
        parent: The parent's pid as the caller knows it (default: ``os.getppid()`` now). If it
            is already gone when this runs, the process exits at once.
    """
    parent = os.getppid() if parent is None else parent
    armed = False
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                         name="kgx-parent-watch").start()


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (of any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
