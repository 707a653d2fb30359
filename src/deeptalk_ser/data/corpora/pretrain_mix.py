"""A pretraining mix of several speaker corpora as one manifest.

Speaker ids of different corpora can clash (``14`` in LibriSpeech vs a Kaldi speaker ``14``), and
a speaker encoder would then merge two people into one class. Every speaker and utterance id is
therefore prefixed with ``<corpus>:`` (the part's corpus name, or an explicit ``prefix``).

``root`` of the mix: the deepest folder that contains every part's root (their common parent),
or the first part's root when the parts share nothing but the file-system root. It only names
the mix (manifest paths are made absolute, so they never depend on it); pass ``root`` to override.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.data.corpora.base import CorpusLoader

PartSpec = CorpusLoader | Mapping[str, Any]


def build_part(spec: PartSpec) -> tuple[CorpusLoader, str | None]:
    """A loader and its optional explicit prefix from an instance or a dict.

    Dicts are Hydra nodes with ``_target_`` (the mix is instantiated non-recursively so that a
    part may carry ``prefix``).
    """
    if isinstance(spec, CorpusLoader):
        return spec, None
    if not isinstance(spec, Mapping):
        raise TypeError(f"a mix part must be a CorpusLoader or a mapping, got {type(spec).__name__}")
    kwargs = dict(spec)
    prefix = kwargs.pop("prefix", None)
    if "_target_" not in kwargs:
        raise ValueError(f"a mix part dict needs '_target_' (a loader class), got keys {sorted(kwargs)}")
    from hydra.utils import instantiate

    loader = instantiate(kwargs)
    if not isinstance(loader, CorpusLoader):
        raise TypeError(f"mix part built a {type(loader).__name__}, not a CorpusLoader")
    return loader, (str(prefix) if prefix is not None else None)


def common_root(roots: Sequence[Path]) -> Path:
    """Common parent of ``roots``; the first root when that parent is only the file-system root."""
    resolved = [r.resolve() for r in roots]
    common = Path(os.path.commonpath([str(r) for r in resolved]))
    return resolved[0] if common == Path(common.anchor) else common


class PretrainMixCorpus(CorpusLoader):
    """``parts``: loader instances or dicts (see :func:`build_part`). Split, label and extras of
    each part are kept; ``corpus`` stays the part's corpus name."""
    name = "pretrain_mix"

    def __init__(self, parts: Sequence[PartSpec], root: str | Path | None = None) -> None:
        if isinstance(parts, (str, bytes)) or not isinstance(parts, Sequence) or not parts:
            raise ValueError("pretrain_mix needs a non-empty list of parts")
        built = [build_part(p) for p in parts]
        self.parts = [loader for loader, _ in built]
        self.prefixes = [prefix or loader.name for loader, prefix in built]
        dup = sorted({p for p in self.prefixes if self.prefixes.count(p) > 1})
        if dup:
            raise ValueError(f"mix parts share the id prefix {dup}: give each such part its own 'prefix'")
        bad = [p for p in self.prefixes if ":" in p or not p]
        if bad:
            raise ValueError(f"a mix prefix must be non-empty and hold no ':', got {bad}")
        no_audio = [loader.name for loader in self.parts if not loader.has_audio]
        if no_audio:
            raise ValueError(f"pretrain_mix mixes audio corpora; {no_audio} hold(s) precomputed features")
        super().__init__(root if root is not None else common_root([loader.root for loader in self.parts]))

    def options(self) -> dict[str, Any]:
        return {**super().options(),
                "parts": [{"prefix": prefix, **loader.options()} for prefix, loader in zip(self.prefixes, self.parts)]}

    def scan(self) -> list[Utterance]:
        utts = []
        for prefix, loader in zip(self.prefixes, self.parts):
            for u in loader.scan():
                p = Path(u.path)
                u.path = str(p if p.is_absolute() else loader.root.resolve() / p)
                u.id, u.speaker = f"{prefix}:{u.id}", f"{prefix}:{u.speaker}"
                utts.append(u)
        return utts
