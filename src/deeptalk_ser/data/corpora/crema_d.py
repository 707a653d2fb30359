"""CREMA-D: ``AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav`` (e.g. ``1001_DFA_ANG_XX.wav``).

Speaker = actor id (``"1001"``); gender and age come from ``VideoDemographics.csv``. CREMA-D
defines no split (``split`` stays None): protocols build actor folds from ``speaker``/``gender``.

Two label sources (option ``labels``):

- ``acted`` (default): the emotion the actor was asked to portray, from the file name.
- ``perceived``: the plurality vote of the crowd raters, from
  ``processedResults/tabulatedVotes.csv``. That file stacks three rating conditions
  (voice-only, face-only, audio-visual) for every clip; the unnamed first column is
  ``100000 * queryType + clipNum`` with queryType 1 = voice-only (the corpus's own
  ``tabulateVotesV2.r``/``summarizeVotes.r``). Only the condition chosen by ``vote_modality``
  (default ``voice``, the only one an audio model can be held to) is read. A tie such as
  ``A:D`` has no single perceived emotion: ``label`` is None and ``vote_tie`` is True, the raw
  vote stays in ``label_raw``; the task layer drops None labels like any unlabelled utterance.

Extras: ``label_raw``, ``label_acted`` (canonical acted emotion, kept in both modes),
``sentence`` (IEO, TIE, ...), ``level`` (LO/MD/HI for sentence IEO, XX = unspecified),
``gender`` (f/m), ``age``; perceived mode adds ``vote_tie`` and ``vote_agreement`` when the
file has an ``agreement`` column.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.data.corpora._common import check_choice, list_files, lookup, normalise_gender, parse_float, read_csv
from deeptalk_ser.data.corpora.base import CorpusLoader

log = logging.getLogger(__name__)

CREMA_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
CREMA_SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
CREMA_LEVELS = ("LO", "MD", "HI", "XX")
#: One-letter emotions of the perception votes (emoVote) -> canonical names.
VOTE_EMOTIONS = {"A": "angry", "D": "disgust", "F": "fear", "H": "happy", "N": "neutral", "S": "sad"}
VOTE_TIE_SEPARATOR = ":"

DEMOGRAPHICS_FILE = "VideoDemographics.csv"
DEMO_ACTOR, DEMO_AGE, DEMO_SEX = "ActorID", "Age", "Sex"

VOTES_FILE = "processedResults/tabulatedVotes.csv"
#: Column names of tabulatedVotes.csv the loader relies on. ``VOTES_INDEX`` is R's unnamed
#: row-name column (``100000 * queryType + clipNum``).
VOTES_FILENAME, VOTES_EMOVOTE, VOTES_AGREEMENT, VOTES_INDEX = "fileName", "emoVote", "agreement", ""
VOTE_MODALITIES = {"voice": 1, "face": 2, "audiovisual": 3}
_QUERY_TYPE_BASE = 100000

_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})\.wav$",
                   re.IGNORECASE)


class CremaDCorpus(CorpusLoader):
    """``labels``: ``acted`` | ``perceived``; ``vote_modality`` (perceived only): which
    rating condition of tabulatedVotes.csv to read (``voice`` | ``face`` | ``audiovisual``)."""
    name = "crema_d"

    def __init__(self, root: str | Path, labels: str = "acted", vote_modality: str = "voice") -> None:
        super().__init__(root)
        check_choice(labels, ("acted", "perceived"), "labels")
        check_choice(vote_modality, tuple(VOTE_MODALITIES), "vote_modality")
        self.labels = labels
        self.vote_modality = vote_modality

    def options(self) -> dict[str, Any]:
        opts = {**super().options(), "labels": self.labels}
        if self.labels == "perceived":
            opts["vote_modality"] = self.vote_modality
        return opts

    def scan(self) -> list[Utterance]:
        wav_dir = self.require("AudioWAV")
        demographics = self._read_demographics(self.require(DEMOGRAPHICS_FILE))
        votes = self._read_votes(self.require(VOTES_FILE)) if self.labels == "perceived" else {}

        def parse(p: Path) -> Utterance:
            m = _NAME.match(p.name)
            if not m:
                raise DataError(p, "file name does not follow <actor>_<sentence>_<emotion>_<level>.wav "
                                   "(e.g. 1001_DFA_ANG_XX.wav)")
            actor, sentence = m["actor"], m["sentence"].upper()
            emotion, level = m["emotion"].upper(), m["level"].upper()
            acted = lookup(CREMA_EMOTIONS, emotion, p, "CREMA-D emotion code")
            if sentence not in CREMA_SENTENCES:
                raise DataError(p, f"unknown CREMA-D sentence code {sentence!r} (known: {' '.join(CREMA_SENTENCES)})")
            if level not in CREMA_LEVELS:
                raise DataError(p, f"unknown CREMA-D level code {level!r} (known: {' '.join(CREMA_LEVELS)})")
            if actor not in demographics:
                raise DataError(self.root / DEMOGRAPHICS_FILE, f"no row for actor {actor} (needed by {p.name})")
            gender, age = demographics[actor]
            extra: dict[str, Any] = {"label_acted": acted, "sentence": sentence, "level": level,
                                     "gender": gender, "age": age}
            if self.labels == "acted":
                label, extra["label_raw"] = acted, emotion
            else:
                if p.stem not in votes:
                    raise DataError(self.root / VOTES_FILE,
                                    f"no {self.vote_modality} vote row for clip {p.stem}")
                label, vote_extra = votes[p.stem]
                extra.update(vote_extra)
            return Utterance(id=p.stem, path=str(p.relative_to(self.root)), speaker=actor, label=label,
                             corpus=self.name, extra=extra)

        utts = self.parse_each(list_files(wav_dir), parse)
        if not utts and not self.rejected:
            raise DataError(wav_dir, "no CREMA-D .wav files found")
        return utts

    @staticmethod
    def _read_demographics(path: Path) -> dict[str, tuple[str | None, int | None]]:
        """actor -> (gender, age)."""
        out: dict[str, tuple[str | None, int | None]] = {}
        for line, row in read_csv(path, (DEMO_ACTOR, DEMO_AGE, DEMO_SEX)):
            actor = row[DEMO_ACTOR]
            if actor in out:
                raise DataError(path, f"duplicate actor {actor}", line=line)
            age = parse_float(row[DEMO_AGE], path, DEMO_AGE, line=line, allow_empty=True)
            out[actor] = (normalise_gender(row[DEMO_SEX], path, line), None if age is None else int(age))
        return out

    def _read_votes(self, path: Path) -> dict[str, tuple[str | None, dict[str, Any]]]:
        """clip -> (canonical perceived label or None on a tie, extras), for one rating condition."""
        wanted = VOTE_MODALITIES[self.vote_modality]
        out: dict[str, tuple[str | None, dict[str, Any]]] = {}
        has_index: bool | None = None
        for line, row in read_csv(path, (VOTES_FILENAME, VOTES_EMOVOTE)):
            if has_index is None:
                has_index = VOTES_INDEX in row
                if not has_index:
                    log.warning("%s has no unnamed row-index column: assuming one rating condition per clip", path)
            if has_index:
                try:
                    query_type = int(row[VOTES_INDEX]) // _QUERY_TYPE_BASE
                except ValueError:
                    raise DataError(path, f"row index {row[VOTES_INDEX]!r} is not 100000*queryType+clipNum",
                                    line=line) from None
                if query_type != wanted:
                    continue
            clip = row[VOTES_FILENAME].removesuffix(".wav")
            if clip in out:
                hint = "" if has_index else " (and there is no row-index column telling the rating conditions apart)"
                raise DataError(path, f"second vote row for clip {clip}{hint}", line=line)
            vote = row[VOTES_EMOVOTE]
            parts = vote.split(VOTE_TIE_SEPARATOR)
            for part in parts:
                lookup(VOTE_EMOTIONS, part, path, f"{VOTES_EMOVOTE} emotion", line=line)
            tie = len(parts) > 1
            extra: dict[str, Any] = {"label_raw": vote, "vote_tie": tie}
            if VOTES_AGREEMENT in row:
                extra["vote_agreement"] = parse_float(row[VOTES_AGREEMENT], path, VOTES_AGREEMENT, line=line,
                                                      allow_empty=True)
            out[clip] = (None if tie else VOTE_EMOTIONS[vote], extra)
        return out
