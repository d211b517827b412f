"""One version of the graph at a time: the store a server pins while ``kgx extract`` may
rewrite its folder.

A query worker that is replaced (killed past its timeout, or dead) opens the store again. If
a run were rewriting ``OUT/store`` meanwhile, the new worker would open another version than
the others, or a store in the making. So the server serves a *pinned* copy:
``OUT/.serve/PID-N/store``, a RocksDB checkpoint of ``OUT/store`` made through
``pyoxigraph.Store.backup``, which hard-links the store's immutable files (no copy on the
same file system). The copy is removed when the server stops; one left by a server that was
killed is removed by the next one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from kgx.outdir import REPORT_FILE, SERVE_DIR, STORE_DIR
from kgx.runtime.processes import pid_alive


def source_identity(out: Path) -> tuple[int, ...]:
    """What changes when a run replaces or writes ``OUT/store``, or rewrites its report."""
    ident: list[int] = []
    for p in (out / STORE_DIR, out / REPORT_FILE):
        try:
            st = p.stat()
            ident += [st.st_ino, st.st_mtime_ns]
        except OSError:
            ident += [0, 0]
    return tuple(ident)


class PinnedVersions:
    """The versions of ``OUT/store`` a server has pinned, in ``OUT/.serve``.

    Args:
        out: The output directory.
        log: Where it says what it did.
    """

    def __init__(self, out: Path, log: Callable[[str], None] = lambda m: None) -> None:
        self.out = out
        self.log = log
        self.folder = out / SERVE_DIR
        self._n = 0
        self.identity: tuple[int, ...] = ()
        self._remove_abandoned()

    def _remove_abandoned(self) -> None:
        """Copies left by servers that are gone (killed before they could remove them)."""
        if not self.folder.is_dir():
            return
        for d in self.folder.iterdir():
            pid = d.name.split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                shutil.rmtree(d, ignore_errors=True)

    def pin(self) -> Path:
        """A new pinned copy of ``OUT/store`` (or ``OUT/store`` itself where no copy can be
        made: a read-only folder; then a rewrite of the folder reaches the server)."""
        import pyoxigraph as ox

        self.identity = source_identity(self.out)
        self._n += 1
        target = self.folder / f"{os.getpid()}-{self._n}"
        try:
            self.folder.mkdir(exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            target.mkdir()
            ox.Store.read_only(str(self.out / STORE_DIR)).backup(str(target / STORE_DIR))
        except OSError as exc:
            shutil.rmtree(target, ignore_errors=True)
            self.log(f"kgx: cannot pin a version of {self.out / STORE_DIR} ({exc}); serving it "
                     "as it is, so a run that rewrites the folder changes what the server "
                     "answers")
            return self.out / STORE_DIR
        return target / STORE_DIR

    def changed(self) -> bool:
        """Whether ``OUT/store`` or its report changed since the last :meth:`pin`."""
        return source_identity(self.out) != self.identity

    def release(self, store: Path) -> None:
        """Remove a pinned copy (no worker may have it open any more)."""
        if store.parent.parent == self.folder:
            shutil.rmtree(store.parent, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.folder.rmdir()  # gone when no copy is left
