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
from deeptalk_ser.data.corpora.base import CorpusLoader, CorpusRootMissing
from deeptalk_ser.utils.errors import DataError, user_error_in

PartSpec = CorpusLoader | Mapping[str, Any]
#: the config key of the parts list (conf/data/pretrain_mix.yaml, voxceleb.yaml), named in errors
PARTS_KEY = "data.loader.parts"


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


def build_parts(parts: Sequence[PartSpec]) -> list[tuple[CorpusLoader, str | None]]:
    """:func:`build_part` for every part; the parts whose root is missing are reported together.

    A pretraining mix names several corpus roots: stopping at the first missing one would make a
    user fix them one run at a time (VoxCeleb1, rerun, VoxCeleb2, rerun). Other errors stop at once.
    """
    built: list[tuple[CorpusLoader, str | None]] = []
    missing: list[tuple[int, CorpusRootMissing]] = []
    for i, spec in enumerate(parts):
        try:
            built.append(build_part(spec))
        except Exception as exc:  # noqa: BLE001  (Hydra's instantiate wraps the loader's error)
            cause = user_error_in(exc)
            if not isinstance(cause, CorpusRootMissing):
                raise
            missing.append((i, cause))
    if missing:
        listed = ", ".join(f"{PARTS_KEY}[{i}].root={err.path} ({_part_name(parts[i])})" for i, err in missing)
        raise DataError(common_root([Path(err.path) for _, err in missing]),
                        f"{len(missing)} of the {len(parts)} corpus roots of the mix not found: {listed}; put the "
                        "corpora there, set those keys, or set DEEPTALK_DATA_DIR to the folder holding every corpus "
                        "(paths.data_dir, conf/paths/default.yaml)")
    return built


def _part_name(spec: PartSpec) -> str:
    """The loader class a part names, for error messages."""
    if isinstance(spec, CorpusLoader):
        return spec.name
    return str(spec.get("_target_", "?")).rsplit(".", 1)[-1] if isinstance(spec, Mapping) else "?"


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
        built = build_parts(parts)
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
