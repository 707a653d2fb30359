"""VoxCeleb1: ``wav/<spk>/<youtube_id>/<nnnnn>.wav`` plus ``vox1_meta.csv``, ``iden_split.txt``
and the verification trial lists (``veri_test2.txt``, ``list_test_all2.txt``, ``list_test_hard2.txt``).

Split = the meta ``Set`` column (``dev``/``test``). The identification split (1 train, 2 val,
3 test) goes to the ``iden_split`` extra when ``iden_split.txt`` is present.

``exclude_trial_list`` is a training guard: every speaker named in that trial list is dropped,
so an encoder pretrained on this manifest can be scored on that list without speaker overlap.
VoxCeleb1-E/H use all 1,251 speakers, so excluding them leaves nothing; only O
(``veri_test2.txt``, test speakers id10270-id10309) is compatible with training on dev.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.data.trials import read_trials as read_trial_list  # noqa: F401  (the VoxCeleb trial format)
from deeptalk_ser.data.corpora._common import (ANGLOPHONE_NATIONALITIES, check_choices, file_fingerprint, iter_lines,
                              resolve_in_root, subdirs, walk_three_level)
from deeptalk_ser.data.corpora.base import CorpusLoader

META_HEADER = ("VoxCeleb1 ID", "VGGFace1 ID", "Gender", "Nationality", "Set")
VOX1_SETS = ("dev", "test")
IDEN_SPLITS = {1: "train", 2: "val", 3: "test"}


@dataclass(frozen=True)
class Vox1Speaker:
    id: str
    name: str
    gender: str
    nationality: str
    set: str


def read_vox1_meta(path: Path) -> dict[str, Vox1Speaker]:
    """Speaker table of ``vox1_meta.csv`` (TAB-separated, header checked)."""
    out: dict[str, Vox1Speaker] = {}
    lines = iter_lines(path)
    first = next(lines, None)
    if first is None or tuple(f.strip() for f in first[1].split("\t")) != META_HEADER:
        raise DataError(path, f"expected the TAB-separated header {chr(9).join(META_HEADER)!r}",
                        line=first[0] if first else None)
    for lineno, line in lines:
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) != len(META_HEADER) or not all(fields):
            raise DataError(path, f"expected {len(META_HEADER)} non-empty TAB-separated fields, got {line!r}",
                            line=lineno)
        spk, name, gender, nationality, set_ = fields
        if set_ not in VOX1_SETS:
            raise DataError(path, f"Set must be one of {VOX1_SETS}, got {set_!r}", line=lineno)
        if spk in out:
            raise DataError(path, f"speaker {spk} listed twice", line=lineno)
        out[spk] = Vox1Speaker(spk, name, gender.lower(), nationality, set_)
    return out


def read_iden_split(path: Path) -> dict[str, int]:
    """``<1|2|3> <spk>/<video>/<nnnnn>.wav`` -> {relative path: split code}."""
    out: dict[str, int] = {}
    for lineno, line in iter_lines(path):
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("1", "2", "3"):
            raise DataError(path, f"expected '<1|2|3> <relative path>', got {line!r}", line=lineno)
        if parts[1] in out:
            raise DataError(path, f"path {parts[1]} listed twice", line=lineno)
        out[parts[1]] = int(parts[0])
    return out


def trial_speakers(trials: Sequence[tuple[int, str, str]]) -> set[str]:
    """Speakers named in a trial list: the first component of each path (``id10270/...``)."""
    return {p.split("/", 1)[0] for _, enrol, test in trials for p in (enrol, test)}


class VoxCeleb1Corpus(CorpusLoader):
    """Options: ``sets`` (meta Set values to keep), ``anglophone_only`` (nationality in
    Australia/Canada/Ireland/UK/USA), ``exclude_trial_list`` (file name in the root, or an absolute
    path, whose speakers are dropped). Utterance id ``<spk>/<video>/<nnnnn>``."""
    name = "voxceleb1"

    def __init__(self, root: str | Path, sets: Sequence[str] = VOX1_SETS, anglophone_only: bool = False,
                 exclude_trial_list: str | None = None, meta_file: str = "vox1_meta.csv",
                 iden_split_file: str = "iden_split.txt") -> None:
        super().__init__(root)
        self.sets = check_choices("sets", sets, VOX1_SETS)
        self.anglophone_only = bool(anglophone_only)
        self.exclude_trial_list = resolve_in_root(self.root, exclude_trial_list) if exclude_trial_list else None
        self.meta_path = resolve_in_root(self.root, meta_file)
        self.iden_split_path = resolve_in_root(self.root, iden_split_file)

    def options(self) -> dict[str, Any]:
        label_files = [self.meta_path, self.iden_split_path] + ([self.exclude_trial_list] if self.exclude_trial_list else [])
        return {**super().options(), "sets": self.sets, "anglophone_only": self.anglophone_only,
                "exclude_trial_list": str(self.exclude_trial_list) if self.exclude_trial_list else None,
                "label_files": {str(p): file_fingerprint(p) for p in label_files}}

    def selected_speakers(self, meta: dict[str, Vox1Speaker]) -> set[str]:
        """Speakers of the meta table that pass the set, nationality and trial-list filters."""
        keep = {s.id for s in meta.values()
                if s.set in self.sets and (not self.anglophone_only or s.nationality in ANGLOPHONE_NATIONALITIES)}
        if self.exclude_trial_list is not None:
            keep -= trial_speakers(read_trial_list(self.exclude_trial_list))
        return keep

    def scan(self) -> list[Utterance]:
        wav_dir = self.require("wav")
        meta = read_vox1_meta(self.meta_path)
        unknown = [s for s in subdirs(wav_dir) if s not in meta]
        if unknown:
            raise DataError(self.meta_path, f"speaker folder(s) under wav/ missing from the meta table: {unknown[:5]}")
        iden = read_iden_split(self.iden_split_path) if self.iden_split_path.is_file() else {}
        utts = []
        for spk, video, name in walk_three_level(wav_dir, ".wav", self.selected_speakers(meta)):
            rel = f"{spk}/{video}/{name}"
            s = meta[spk]
            extra: dict[str, Any] = {"gender": s.gender, "nationality": s.nationality, "video": video}
            if rel in iden:
                extra["iden_split"] = iden[rel]
            utts.append(Utterance(id=rel[: -len(".wav")], path=f"wav/{rel}", speaker=spk, split=s.set,
                                  corpus=self.name, extra=extra))
        if not utts:
            raise DataError(wav_dir, f"no VoxCeleb1 .wav files left for sets={self.sets}, "
                                     f"anglophone_only={self.anglophone_only}, exclude_trial_list={self.exclude_trial_list}")
        return utts
