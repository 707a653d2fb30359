"""Bring your own corpus: a folder per label (``data=folder``) or your own table (``data=manifest``).

Both give the same manifest as every corpus loader, so prepare's checks (headers, checksums,
truncation), ``data.on_error`` and every protocol apply unchanged. Labels become the canonical
emotion names the tasks map (angry, sad, happy, neutral, ...) by :class:`LabelMatcher`: case and
surrounding blanks do not matter (``Angry/`` is angry), ``label_map`` renames the others.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from deeptalk_ser.data.corpora._common import file_fingerprint, iter_lines, read_csv
from deeptalk_ser.data.corpora.base import CorpusLoader
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.utils.errors import ConfigError, DataError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".m4a")


def _speaker_regex(pattern: str) -> re.Pattern[str]:
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ConfigError("data.loader.speaker_pattern", f"not a regular expression ({exc})") from None
    if "speaker" not in rx.groupindex:
        raise ConfigError("data.loader.speaker_pattern", f"{pattern!r} has no (?P<speaker>...) group")
    return rx


class LabelMatcher:
    """A user's label -> the label the tasks see: ``label_map``'s exact key, else its key matched
    case-insensitively, else the label itself stripped and lower-cased. Real corpora ship
    ``Angry/`` or ``Sad`` where the tasks name ``angry`` and ``sad``; without this they were
    left out of every task without a word."""

    def __init__(self, label_map: Mapping[str, str] | None) -> None:
        self.exact = {str(k): str(v) for k, v in (label_map or {}).items()}
        self.folded: dict[str, str] = {}
        for key, value in self.exact.items():
            folded = key.strip().lower()
            if self.folded.get(folded, value) != value:
                raise ConfigError("data.loader.label_map", f"keys differing only in case map {key.strip()!r} to both "
                                                           f"{self.folded[folded]!r} and {value!r}")
            self.folded[folded] = value

    def __call__(self, raw: str) -> str:
        if raw in self.exact:
            return self.exact[raw]
        folded = raw.strip().lower()
        return self.folded.get(folded, folded)


class FolderCorpus(CorpusLoader):
    """``<root>/<label>/**/<file>``: the label is the top folder's name (through :class:`LabelMatcher`),
    the speaker comes from the file name by ``speaker_pattern`` (a regular expression with a
    ``speaker`` group, searched in the file name without its suffix; an optional ``split`` group
    sets the manifest split). A file name the pattern does not match is an error naming the file
    (``data.on_error=skip`` leaves it out and lists it)."""

    name = "folder"

    def __init__(self, root: str | Path, speaker_pattern: str = r"^(?P<speaker>[^_]+)_",
                 label_map: Mapping[str, str] | None = None, suffixes: Sequence[str] = AUDIO_SUFFIXES) -> None:
        super().__init__(root)
        self.speaker_pattern = speaker_pattern
        self._rx = _speaker_regex(speaker_pattern)
        self._labels = LabelMatcher(label_map)
        self.label_map = self._labels.exact
        self.suffixes = tuple(s.lower() for s in suffixes)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "speaker_pattern": self.speaker_pattern, "label_map": self.label_map,
                "suffixes": list(self.suffixes)}

    def scan(self) -> list[Utterance]:
        label_dirs = sorted(d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not label_dirs:
            raise DataError(self.root, "no label folders (expected <root>/<label>/<audio files>)")
        files = [p for d in label_dirs for p in sorted(d.rglob("*"))
                 if p.is_file() and p.suffix.lower() in self.suffixes and not p.name.startswith(".")]
        if not files:
            raise DataError(self.root, f"no audio files ({', '.join(self.suffixes)}) in the label folders")
        utts = self.parse_each(files, self._parse)
        ids = [u.id for u in utts]
        if len(set(ids)) != len(ids):  # ids are label/relative path: unique by construction
            raise DataError(self.root, "duplicate utterance ids")
        return utts

    def _parse(self, p: Path) -> Utterance:
        rel = p.relative_to(self.root)
        m = self._rx.search(p.stem)
        if not m or not m["speaker"]:
            raise DataError(p, f"file name does not match data.loader.speaker_pattern {self.speaker_pattern!r}")
        folder = rel.parts[0]
        split = m.groupdict().get("split")
        return Utterance(id=str(rel.with_suffix("")).replace("\\", "/"), path=str(rel), speaker=m["speaker"],
                         label=self._labels(folder), split=split, corpus=self.name,
                         extra={"label_raw": folder})


class ManifestCorpus(CorpusLoader):
    """A user's CSV (header with ``path``, ``speaker``, ``label``; optional ``split``, ``id`` and
    any further columns, kept as extras) or JSON-lines file (one object per line, same keys).
    Relative paths are relative to the file's folder (the corpus root); labels go through
    :class:`LabelMatcher`."""

    name = "manifest"
    REQUIRED = ("path", "speaker", "label")

    def __init__(self, path: str | Path, label_map: Mapping[str, str] | None = None, delimiter: str = ",") -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise DataError(self.path, "manifest file not found (set data.path)")
        super().__init__(self.path.parent)
        self._labels = LabelMatcher(label_map)
        self.label_map = self._labels.exact
        self.delimiter = delimiter

    def options(self) -> dict[str, Any]:
        return {**super().options(), "manifest": str(self.path.resolve()), "label_map": self.label_map,
                "label_files": {str(self.path): file_fingerprint(self.path)}}

    def _rows(self) -> list[tuple[int, dict[str, Any]]]:
        if self.path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            rows = []
            for lineno, line in iter_lines(self.path, "manifest"):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(self.path, f"not JSON ({exc.msg})", line=lineno) from None
                if not isinstance(row, dict):
                    raise DataError(self.path, "expected one JSON object per line", line=lineno)
                rows.append((lineno, row))
            return rows
        return list(read_csv(self.path, self.REQUIRED, delimiter=self.delimiter))

    def scan(self) -> list[Utterance]:
        rows = self._rows()
        if not rows:
            raise DataError(self.path, "manifest holds no rows")

        def parse(item: tuple[int, dict[str, Any]]) -> Utterance:
            lineno, row = item
            missing = [k for k in self.REQUIRED if not str(row.get(k) or "").strip()]
            if missing:
                raise DataError(self.path, f"row lacks {missing}", line=lineno)
            path, label = str(row["path"]).strip(), str(row["label"]).strip()
            uid = str(row.get("id") or Path(path).with_suffix("").as_posix())
            split = str(row["split"]).strip() if row.get("split") not in (None, "") else None
            extra = {k: v for k, v in row.items() if k not in ("id", "path", "speaker", "label", "split")}
            return Utterance(id=uid, path=path, speaker=str(row["speaker"]).strip(), label=self._labels(label),
                             split=split, corpus=self.name, extra={"label_raw": label, **extra, "line": lineno})

        utts = self.parse_each(rows, parse, record_id=lambda item: f"line {item[0]}")
        seen: dict[str, int] = {}
        for u in utts:
            lineno = u.extra.pop("line")
            if u.id in seen:
                raise DataError(self.path, f"id {u.id!r} repeats line {seen[u.id]}", line=lineno)
            seen[u.id] = lineno
        return utts
