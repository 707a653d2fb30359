"""Small helpers shared by the corpus loaders (emotion and speaker corpora).

They exist so that every loader reports bad input the same way: a :class:`DataError` naming
the file and, for text files, the 1-based line, never a bare ``KeyError`` or ``ValueError``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence, TypeVar

from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.utils.io import file_stat, iter_lines  # noqa: F401  (re-exported for the loaders)

T = TypeVar("T")

#: Spellings of gender found in the corpora's metadata -> the manifest convention ("f"/"m",
#: as EmoDB uses). Unknown/empty -> None.
_GENDERS: dict[str, str | None] = {
    "f": "f", "female": "f", "woman": "f",
    "m": "m", "male": "m", "man": "m",
    "": None, "unknown": None, "u": None,
}


def normalise_gender(raw: str, path: str | Path, line: int | None = None) -> str | None:
    """"Male"/"Female"/"Unknown" (any case) -> "m"/"f"/None; anything else is a data error,
    because a silently dropped gender would skew gender-stratified folds."""
    key = raw.strip().lower()
    if key not in _GENDERS:
        raise DataError(path, f"unknown gender value {raw!r} (expected Male/Female/Unknown)", line=line)
    return _GENDERS[key]


def lookup(table: Mapping[str, T], code: str, path: str | Path, what: str, line: int | None = None) -> T:
    """``table[code]`` or a DataError listing the known codes (typos in label files are common)."""
    try:
        return table[code]
    except KeyError:
        known = " ".join(sorted(table))
        raise DataError(path, f"unknown {what} {code!r} (known: {known})", line=line) from None


def parse_float(raw: str, path: str | Path, column: str, line: int | None = None,
                allow_empty: bool = False) -> float | None:
    """A float field; empty -> None only where the corpus leaves values out (hidden test labels)."""
    text = raw.strip()
    if not text and allow_empty:
        return None
    try:
        return float(text)
    except ValueError:
        raise DataError(path, f"column {column!r}: expected a number, got {raw!r}", line=line) from None


def list_files(folder: Path, suffix: str = ".wav") -> list[Path]:
    """The ``suffix`` files directly in ``folder``, sorted. Hidden files are skipped: archives
    unpacked on macOS carry ``._<name>.wav``/``._<name>.txt`` resource forks, not data."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() == suffix and not p.name.startswith(".") and p.is_file())


def read_csv(path: Path, required: Sequence[str], delimiter: str = ",") -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line number, row)`` for a headed CSV, checking the header names ``required``
    columns and every row has the header's field count. Values are stripped; a UTF-8 BOM (as
    spreadsheet exports write) is ignored."""
    if not path.is_file():
        raise DataError(path, "label/metadata file missing")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise DataError(path, "file is empty (no header line)", line=1)
        header = [h.strip() for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(path, f"header lacks column(s) {missing}; found {header}", line=1)
        for row in reader:
            if not any(f.strip() for f in row):
                continue
            if len(row) != len(header):
                raise DataError(path, f"expected {len(header)} fields like the header, got {len(row)}",
                                line=reader.line_num)
            yield reader.line_num, {h: f.strip() for h, f in zip(header, row)}


def check_choice(value: str | None, choices: Sequence[str | None], option: str) -> None:
    """Constructor options are validated eagerly so a Hydra typo fails before any scanning."""
    if value not in choices:
        raise ValueError(f"{option} must be one of {list(choices)}, got {value!r}")


# -- speaker corpora: 10^5-10^6 files in <speaker>/<session>/<file> trees, listed with os.scandir

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


#: ``[size, mtime_ns]`` of a label file, for ``options()``: the prepare stamp covers the audio
#: listing but not extras (gender, split, text) that come from label files, so a loader adds
#: their fingerprints to its options to invalidate the stamp when they change.
file_fingerprint = file_stat


def resolve_in_root(root: Path, name: str | Path) -> Path:
    """A label file given by name (looked up in the corpus root) or by absolute path."""
    p = Path(name).expanduser()
    return p if p.is_absolute() else root / p
