"""The corpus loader interface (built from ``conf/data/*.yaml`` by Hydra ``_target_``).

A loader only *scans*: it turns the corpus layout and label files into :class:`Utterance`
records (id, path, speaker, label, split, extras) without decoding audio. Durations and sample
rates are filled from file headers, in parallel, by :mod:`deeptalk_ser.data.prepare`.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar

from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.manifest import Utterance


class CorpusLoader(abc.ABC):
    """Base class. Subclasses set ``name`` (the manifest's ``corpus`` field) and implement ``scan``."""

    name: ClassVar[str] = "corpus"
    #: False for corpora that hold precomputed features instead of audio.
    has_audio: ClassVar[bool] = True

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(self.root, f"{self.name} corpus root not found (set data.root or the environment variable named in the README)")

    def options(self) -> dict[str, Any]:
        """Everything besides the file listing that changes the manifest (part of its cache key)."""
        return {"corpus": self.name, "root": str(self.root.resolve())}

    @abc.abstractmethod
    def scan(self) -> list[Utterance]:
        """List the corpus's utterances from its layout and label files (no audio decoding)."""

    def require(self, rel: str) -> Path:
        """A file or folder the layout must have; a clear error naming it otherwise."""
        p = self.root / rel
        if not p.exists():
            raise DataError(p, f"expected by the {self.name} layout but missing")
        return p
