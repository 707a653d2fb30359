"""LibriSpeech: ``<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac``, one
``<speaker>-<chapter>.trans.txt`` per chapter and ``SPEAKERS.TXT``; ``root`` is the
``LibriSpeech/`` folder that holds the subset folders.

Split = subset name. Extras: ``gender`` (``f``/``m`` from SPEAKERS.TXT), ``chapter`` and
``text`` (absent when the chapter's transcript has no line for the utterance).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.data.corpora._common import check_choices, file_fingerprint, iter_lines, walk_three_level
from deeptalk_ser.data.corpora.base import CorpusLoader

LIBRISPEECH_SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500",
                       "dev-clean", "dev-other", "test-clean", "test-other")
_UTT = re.compile(r"^(?P<spk>\d+)-(?P<chapter>\d+)-(?P<idx>\d+)$")


def read_speakers_txt(path: Path) -> dict[str, str]:
    """{speaker id: 'f'|'m'} from ``SPEAKERS.TXT`` (``;`` comments, ``ID | SEX | SUBSET | MINUTES | NAME``).

    Split on the first four pipes only: a reader name may itself hold pipes (``|CBW|Simon``).
    """
    genders: dict[str, str] = {}
    for lineno, line in iter_lines(path):
        if line.lstrip().startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|", 4)]
        if len(fields) != 5 or not fields[0].isdigit() or fields[1].upper() not in ("F", "M"):
            raise DataError(path, f"expected 'ID | SEX | SUBSET | MINUTES | NAME', got {line!r}", line=lineno)
        if fields[0] in genders:
            raise DataError(path, f"speaker {fields[0]} listed twice", line=lineno)
        genders[fields[0]] = fields[1].lower()
    return genders


def read_transcripts(path: Path, prefix: str) -> dict[str, str]:
    """{utterance id: text} of one chapter's ``trans.txt``; every id must start with ``prefix``
    (``<speaker>-<chapter>-``) so a transcript copied into the wrong chapter is caught."""
    texts: dict[str, str] = {}
    for lineno, line in iter_lines(path):
        utt, _, text = line.partition(" ")
        if not _UTT.match(utt) or not utt.startswith(prefix):
            raise DataError(path, f"expected '{prefix}<nnnn> TEXT', got {line!r}", line=lineno)
        if utt in texts:
            raise DataError(path, f"utterance {utt} transcribed twice", line=lineno)
        texts[utt] = text.strip()
    return texts


class LibriSpeechCorpus(CorpusLoader):
    """Options: ``subsets`` (one or several LibriSpeech subset folders). Utterance id is the
    LibriSpeech id ``<speaker>-<chapter>-<nnnn>``, unique across subsets."""
    name = "librispeech"

    def __init__(self, root: str | Path, subsets: Sequence[str] = ("train-other-500",)) -> None:
        super().__init__(root)
        self.subsets = check_choices("subsets", subsets, LIBRISPEECH_SUBSETS)

    def options(self) -> dict[str, Any]:
        # Transcripts live beside the audio (one per chapter); their count is small enough that
        # the SPEAKERS.TXT fingerprint is the only label file worth stamping.
        speakers_txt = self.root / "SPEAKERS.TXT"
        return {**super().options(), "subsets": self.subsets,
                "label_files": {str(speakers_txt): file_fingerprint(speakers_txt)}}

    def scan(self) -> list[Utterance]:
        genders = read_speakers_txt(self.require("SPEAKERS.TXT"))
        utts = []
        for subset in self.subsets:
            base = self.require(subset)
            texts: dict[str, str] = {}
            loaded: set[tuple[str, str]] = set()
            for spk, chapter, name in walk_three_level(base, ".flac"):
                stem = name[: -len(".flac")]
                m = _UTT.match(stem)
                if not m or m["spk"] != spk or m["chapter"] != chapter:
                    raise DataError(base / spk / chapter / name,
                                    f"file name must be {spk}-{chapter}-<nnnn>.flac to match its folders")
                if spk not in genders:
                    raise DataError(self.root / "SPEAKERS.TXT", f"speaker {spk} (from {subset}/) is not listed")
                if (spk, chapter) not in loaded:
                    loaded.add((spk, chapter))
                    trans = base / spk / chapter / f"{spk}-{chapter}.trans.txt"
                    if trans.is_file():
                        texts.update(read_transcripts(trans, f"{spk}-{chapter}-"))
                extra: dict[str, Any] = {"gender": genders[spk], "chapter": chapter}
                if stem in texts:
                    extra["text"] = texts[stem]
                utts.append(Utterance(id=stem, path=f"{subset}/{spk}/{chapter}/{name}", speaker=spk,
                                      split=subset, corpus=self.name, extra=extra))
        if not utts:
            raise DataError(self.root, f"no LibriSpeech .flac files under {self.subsets}")
        return utts
