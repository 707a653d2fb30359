"""The corpus loader interface and its registry.

A loader only *scans*: it turns the corpus layout and label files into :class:`Utterance`
records (id, path, speaker, label, split, extras) without decoding audio. Durations and sample
rates are filled from file headers, in parallel, by :mod:`deeptalk_ser.prepare`.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Callable, ClassVar

from ..errors import DataError
from ..manifest import Utterance

CORPORA: dict[str, type["CorpusLoader"]] = {}


def register_corpus(name: str) -> Callable[[type["CorpusLoader"]], type["CorpusLoader"]]:
    def deco(cls: type[CorpusLoader]) -> type[CorpusLoader]:
        if name in CORPORA:
            raise ValueError(f"corpus {name!r} registered twice")
        cls.name = name
        CORPORA[name] = cls
        return cls

    return deco


def get_corpus(name: str, **kwargs: Any) -> "CorpusLoader":
    import_builtin_corpora()

    try:
        return CORPORA[name](**kwargs)
    except KeyError:
        raise KeyError(f"unknown corpus {name!r}; known: {sorted(CORPORA)}") from None


def import_builtin_corpora() -> None:
    """Import every module of this package so that each loader registers itself."""
    import importlib
    import pkgutil

    from .. import corpora

    for mod in pkgutil.iter_modules(corpora.__path__):
        importlib.import_module(f"{corpora.__name__}.{mod.name}")


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
