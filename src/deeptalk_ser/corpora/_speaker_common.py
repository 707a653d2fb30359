"""Helpers shared by the speaker-corpus loaders (VoxCeleb1/2, LibriSpeech, mixes).

Speaker corpora hold 10^5-10^6 files in ``<speaker>/<session>/<file>`` trees, so listing uses
``os.scandir`` (one syscall per directory, no per-file ``stat``) instead of ``Path.rglob``.
Label files are read line by line so that every error names the file and the line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..errors import DataError

#: Nationalities the reference pretraining keeps with ``anglophone_only`` (VoxCeleb1 meta values).
ANGLOPHONE_NATIONALITIES = frozenset({"Australia", "Canada", "Ireland", "UK", "USA"})


def check_choices(option: str, values: str | Sequence[str], allowed: Iterable[str] | None = None) -> list[str]:
    """Normalise a list option (a bare string means one item) and refuse unknown or empty values:
    a typo such as ``sets: [Dev]`` must fail loudly instead of giving an empty manifest."""
    items = [values] if isinstance(values, str) else [str(v) for v in values]
    if not items:
        raise ValueError(f"{option} must name at least one value")
    if allowed is not None:
        allowed = list(allowed)
        bad = [v for v in items if v not in allowed]
        if bad:
            raise ValueError(f"{option}: unknown value(s) {bad}; allowed: {allowed}")
    if len(set(items)) != len(items):
        raise ValueError(f"{option} lists a value twice: {items}")
    return items


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) for each non-blank line of a UTF-8 file
    (a leading byte-order mark, as spreadsheet exports write, is dropped)."""
    if not path.is_file():
        raise DataError(path, "file not found")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        lineno = 0
        try:
            for lineno, line in enumerate(fh, 1):  # noqa: B007 - lineno is used in the except
                line = line.rstrip("\r\n")
                if line.strip():
                    yield lineno, line
        except UnicodeDecodeError as exc:
            raise DataError(path, f"not UTF-8 text ({exc.reason})", line=lineno + 1) from exc


def subdirs(path: Path) -> list[str]:
    """Sorted names of the sub-directories of ``path`` (hidden ones skipped)."""
    with os.scandir(path) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def files_with_suffix(path: Path, suffix: str) -> list[str]:
    """Sorted names of the files in ``path`` ending with ``suffix`` (case-insensitive; temporaries
    such as ``.00001.wav.tmp`` or hidden files are skipped)."""
    suffix = suffix.lower()
    with os.scandir(path) as it:
        return sorted(e.name for e in it
                      if e.name.lower().endswith(suffix) and not e.name.startswith(".") and e.is_file())


def walk_three_level(base: Path, suffix: str,
                     speakers: Iterable[str] | None = None) -> Iterator[tuple[str, str, str]]:
    """Yield ``(speaker, session, file name)`` for ``base/<speaker>/<session>/<file><suffix>``.

    ``speakers`` limits the walk to those speaker folders (missing ones are skipped), so a
    filtered corpus does not pay for listing the speakers it drops. Order is sorted, so manifests
    are reproducible across file systems.
    """
    names = subdirs(base) if speakers is None else sorted(speakers)
    for spk in names:
        spk_dir = base / spk
        if not spk_dir.is_dir():
            continue
        for session in subdirs(spk_dir):
            for name in files_with_suffix(spk_dir / session, suffix):
                yield spk, session, name


def file_fingerprint(path: Path) -> list[int] | None:
    """``[size, mtime_ns]`` of a label file, for ``options()``: the prepare stamp covers the audio
    listing but not extras (gender, split, text) that come from label files, so a loader adds
    their fingerprints to its options to invalidate the stamp when they change."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


def resolve_in_root(root: Path, name: str | Path) -> Path:
    """A label file given by name (looked up in the corpus root) or by absolute path."""
    p = Path(name).expanduser()
    return p if p.is_absolute() else root / p
