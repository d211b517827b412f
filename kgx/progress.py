"""A progress bar with pages/s and ETA, quiet when stderr is not a terminal."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from tqdm import tqdm


class Progress:
    """tqdm over bytes or pages, with a pages/s figure whatever the unit.

    Args:
        total: Total units (bytes of the file, or pages), if known.
        unit: ``"B"`` or ``"pages"``.
        enabled: Force on or off; ``None`` shows it only on a terminal.
        desc: Label.
    """

    def __init__(self, total: int | None, unit: str, enabled: bool | None = None,
                 desc: str = "") -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._t0 = time.monotonic()
        self._bar = tqdm(total=total, unit=unit, unit_scale=unit == "B", desc=desc,
                         disable=not enabled, dynamic_ncols=True, mininterval=0.5,
                         file=sys.stderr)

    def update(self, n: int, pages: int | None = None) -> None:
        self._bar.update(n)
        self._postfix(pages)

    def update_to(self, value: int, pages: int | None = None) -> None:
        self._bar.update(max(0, value - self._bar.n))
        self._postfix(pages)

    def _postfix(self, pages: int | None) -> None:
        if pages is not None and not self._bar.disable:
            rate = pages / max(1e-9, time.monotonic() - self._t0)
            self._bar.set_postfix_str(f"{pages:,} pages, {rate:,.0f} pages/s", refresh=False)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._bar.close()
