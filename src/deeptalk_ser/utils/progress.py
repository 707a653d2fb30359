"""Progress bars for the long stages (prepare, folds, verification scoring): tqdm on stderr,
quiet where nobody watches: when stderr is not a terminal (logs, CI, subprocess tests), when
``CI`` is set, or with ``DEEPTALK_PROGRESS=0``; ``DEEPTALK_PROGRESS=1`` forces them on.

Bars drawn by Lightning (the training loop) and by extraction follow the same rule through
:func:`progress_enabled`: ``trainer.enable_progress_bar`` is ``null`` by default, and an explicit
true/false from the user wins."""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable, TypeVar

T = TypeVar("T")


def progress_disabled() -> bool:
    """Whether bars are off: ``DEEPTALK_PROGRESS`` (0/1) wins, then ``CI``, then "stderr is not a TTY"."""
    flag = os.environ.get("DEEPTALK_PROGRESS", "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return True
    if flag in ("1", "true", "yes", "on"):
        return False
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false"):
        return True
    return not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


def progress_enabled(setting: bool | None = None) -> bool:
    """The switch for a bar we do not draw through :func:`progress` (Lightning's
    ``enable_progress_bar``, the extraction bar): ``setting`` when the user gave one, else the
    rule of :func:`progress_disabled` (Lightning alone would draw into every redirected log)."""
    return not progress_disabled() if setting is None else bool(setting)


def progress(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "", unit: str = "it",
             disable_below: int = 0, **kwargs: Any) -> Any:
    """``tqdm(iterable, ...)`` that stays silent per :func:`progress_disabled` (and for fewer than
    ``disable_below`` steps: one chunk is not worth a bar); also usable as a manual bar
    (``iterable=None`` with ``total``, then ``update``/``close``)."""
    from tqdm.auto import tqdm

    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    off = progress_disabled() or (total is not None and total < disable_below)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=off, dynamic_ncols=True, leave=False, **kwargs)
