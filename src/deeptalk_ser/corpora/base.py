"""The corpus loader interface and its registry.

A loader only *scans*: it turns the corpus layout and label files into :class:`Utterance`
records (id, path, speaker, label, split, extras) without decoding audio. Durations and sample
rates are filled from file headers, in parallel, by :mod:`deeptalk_ser.prepare`.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar

from ..errors import DataError
from ..manifest import Utterance
from ..registry import Registry, import_submodules

CORPORA = Registry("corpus")
register_corpus = CORPORA.register


def get_corpus(name: str, **kwargs: Any) -> "CorpusLoader":
    from .. import corpora

    import_submodules(corpora)

    return CORPORA.lookup(name)(**kwargs)


class CorpusLoader(abc.ABC):
    """Base class. Subclasses set ``name`` via :func:`register_corpus` and implement ``scan``."""

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
