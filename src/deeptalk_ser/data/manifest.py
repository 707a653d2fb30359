"""JSON-lines manifests: the single interface between corpora and models.

One line per utterance with the fixed keys of :class:`Utterance` plus flat corpus extras
(text id, gender, valence, ...). Everything downstream (extraction, protocols, training)
reads manifests, never a corpus layout.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.utils.io import file_stat, iter_lines, write_text_atomic

CORE_KEYS = ("id", "path", "duration", "sample_rate", "speaker", "label", "split", "corpus", "checksum")


@dataclass
class Utterance:
    """One manifest line. ``label`` is the corpus emotion mapped to a canonical name
    (angry, sad, happy, neutral, ...) or None for speaker-only corpora; the raw corpus code
    goes to ``extra['label_raw']``. ``path`` is absolute or relative to the manifest's root.
    ``checksum`` (xxh3-64 of the file, filled by prepare) keys every cache built from the file."""

    id: str
    path: str
    speaker: str
    label: str | None = None
    split: str | None = None
    duration: float | None = None
    sample_rate: int | None = None
    corpus: str | None = None
    checksum: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str | list[int] | None:
        """What every cache built from this file is keyed by: prepare's content checksum, or the
        file's stat for an utterance that did not come through prepare (no extra I/O otherwise)."""
        return self.checksum or file_stat(self.path)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in CORE_KEYS}
        for k, v in self.extra.items():
            if k in d:
                raise ValueError(f"extra key {k!r} collides with a core manifest key")
            d[k] = v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Utterance":
        core = {k: d.get(k) for k in CORE_KEYS}
        extra = {k: v for k, v in d.items() if k not in CORE_KEYS}
        if core["id"] is None or core["path"] is None or core["speaker"] is None:
            raise ValueError("manifest line lacks one of id, path, speaker")
        core["id"], core["speaker"] = str(core["id"]), str(core["speaker"])
        return cls(extra=extra, **core)


def check_unique_ids(utts: Sequence[Utterance], source: str | Path) -> None:
    """Duplicate ids would silently merge two recordings downstream: refuse them."""
    counts = Counter(u.id for u in utts)
    dups = [i for i, n in counts.items() if n > 1]
    if dups:
        raise DataError(source, f"duplicate utterance id(s): {', '.join(sorted(dups)[:10])}")


def write_manifest(path: str | Path, utts: Iterable[Utterance]) -> None:
    utts = list(utts)
    check_unique_ids(utts, path)
    text = "".join(json.dumps(u.to_dict(), ensure_ascii=False) + "\n" for u in utts)
    write_text_atomic(path, text)


def read_manifest(path: str | Path) -> list[Utterance]:
    utts = []
    for lineno, line in iter_lines(path, "manifest"):
        try:
            utts.append(Utterance.from_dict(json.loads(line)))
        except (json.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:  # AttributeError: a non-object line
            raise DataError(path, f"malformed manifest line ({exc})", line=lineno) from exc
    check_unique_ids(utts, path)
    return utts
