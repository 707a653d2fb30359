"""The corpus loader interface (built from ``conf/data/*.yaml`` by Hydra ``_target_``).

A loader only *scans*: it turns the corpus layout and label files into :class:`Utterance`
records (id, path, speaker, label, split, extras) without decoding audio. Durations and sample
rates are filled from file headers, in parallel, by :mod:`deeptalk_ser.data.prepare`.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, TypeVar

from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.manifest import Utterance

T = TypeVar("T")


class CorpusRootMissing(DataError):
    """A corpus root that is not a folder: its own type, so a mix of corpora can report every
    missing root at once instead of the first (:class:`~deeptalk_ser.data.corpora.pretrain_mix.PretrainMixCorpus`)."""


class CorpusLoader(abc.ABC):
    """Base class. Subclasses set ``name`` (the manifest's ``corpus`` field) and implement ``scan``."""

    name: ClassVar[str] = "corpus"
    #: False for corpora that hold precomputed features instead of audio.
    has_audio: ClassVar[bool] = True

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise CorpusRootMissing(self.root, f"{self.name} corpus root not found: put the corpus there, set data.root=<folder>, "
                                               "or set DEEPTALK_DATA_DIR to the folder holding every corpus "
                                               "(paths.data_dir, conf/paths/default.yaml)")

    #: set by prepare from ``data.on_error``: with "skip", a record whose file name or label is
    #: malformed is left out and listed in :attr:`rejected` (then in the prepare report) instead
    #: of stopping the scan; layout errors (a missing label file, a bad header) always stop it.
    on_error: str = "raise"

    def parse_each(self, records: Iterable[T], parse: Callable[[T], Utterance],
                   record_id: Callable[[T], str] = lambda p: Path(str(p)).stem) -> list[Utterance]:
        """``parse(record)`` for each record (a file, a table row), applying :attr:`on_error` to
        the records it refuses; ``record_id`` names a refused record in :attr:`rejected`."""
        self.rejected: list[dict[str, str]] = []
        out = []
        for rec in records:
            try:
                out.append(parse(rec))
            except DataError as exc:
                if self.on_error != "skip":
                    raise
                where = "" if exc.line is None else f" (line {exc.line})"
                self.rejected.append({"id": record_id(rec), "path": exc.path, "reason": exc.problem + where})
        return out

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
