"""nEMO (Polish acted emotional speech): ``samples/<speaker>_<emotion>_<sentence>.wav`` + ``data.tsv``.

The layout is the corpus's own (github.com/amu-cai/nEMO). ``data.tsv`` is tab-separated UTF-8
(Polish text) with the header ``file_id emotion raw_text normalized_text speaker_id gender age``,
one row per recording, e.g. ``EB0_anger_3.wav  anger  Chodźmy w tango.  chodźmy w tango  "        EB0"
female  27``. Quirks handled here:

- ``speaker_id`` is padded with leading spaces (``"        EB0"``): every field is stripped;
- the text is UTF-8 and never quoted, so the file is read with quoting off (a ``"`` in a
  sentence is text, not a CSV quote);
- the file name repeats speaker and emotion: both must agree with the row's columns.

All six emotions are mapped to canonical names (anger -> angry, happiness -> happy,
sadness -> sad, neutral, fear, surprised -> surprise); the task decides which to use (the copy in
``../shared/data/nemo`` holds four: anger, happiness, sadness, neutral). Sentence ids are shared
across emotions and speakers (``EB0_anger_3`` and ``EB0_neutral_3`` are the same text), so the
extras ``text`` (the raw transcript, the default key of ``task=emotion_shift``) and ``sentence``
(the id from the file name) both pair the same sentence across emotions.

Extras: ``label_raw`` (the tsv emotion), ``text``, ``normalized_text``, ``sentence``, ``gender``
(f/m), ``age`` (int or None). No official split (``split`` stays None); the default protocol is
leave one speaker out. A malformed row, an unknown emotion or a missing wav is a
:class:`DataError` naming ``data.tsv`` and the line; with ``data.on_error=skip`` that row is left
out and reported. Wavs in ``samples/`` that no row lists are ignored with a warning.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Any

from deeptalk_ser.data.corpora._common import file_fingerprint, lookup, normalise_gender, parse_float
from deeptalk_ser.data.corpora.base import CorpusLoader
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.utils.errors import DataError

log = logging.getLogger(__name__)

#: nEMO's emotion names (data.tsv and file names) -> canonical names.
NEMO_EMOTIONS = {
    "anger": "angry",
    "fear": "fear",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "surprised": "surprise",
}
LABELS_FILE = "data.tsv"
AUDIO_DIR = "samples"
COLUMNS = ("file_id", "emotion", "raw_text", "normalized_text", "speaker_id", "gender", "age")
_NAME = re.compile(r"^(?P<spk>[A-Za-z0-9]+)_(?P<emo>[a-z]+)_(?P<sentence>\d+)\.wav$")


class NemoCorpus(CorpusLoader):
    name = "nemo"

    def options(self) -> dict[str, Any]:
        # gender, age and text come from data.tsv, which the audio listing's stamp does not cover
        labels = self.root / LABELS_FILE
        return {**super().options(), "label_files": {str(labels): file_fingerprint(labels)}}

    def scan(self) -> list[Utterance]:
        labels = self.require(LABELS_FILE)
        audio = self.require(AUDIO_DIR)
        rows = self._read_rows(labels)
        seen: dict[str, int] = {}

        def parse(item: tuple[int, list[str]]) -> Utterance:
            line, fields = item
            utt = self._parse(labels, line, fields)
            if utt.id in seen:
                raise DataError(labels, f"{fields[0].strip()} is listed twice (first on line {seen[utt.id]})",
                                line=line)
            seen[utt.id] = line
            return utt

        utts = self.parse_each(rows, parse, record_id=lambda item: f"line {item[0]}")
        if not utts and not self.rejected:
            raise DataError(labels, "no rows: the nEMO label file lists no recordings")
        listed = {fields[0].strip() for _, fields in rows}  # rejected rows too: they were reported
        unlisted = sorted(p.name for p in audio.iterdir()
                          if p.suffix.lower() == ".wav" and not p.name.startswith(".") and p.name not in listed)
        if unlisted:
            log.warning("%s: %d wav file(s) not listed in %s are ignored (e.g. %s)", audio, len(unlisted),
                        LABELS_FILE, ", ".join(unlisted[:3]))
        return utts

    @staticmethod
    def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
        """``(line, fields)`` for every non-blank row after a header naming :data:`COLUMNS`
        in order (the header is a layout error: it always stops the scan)."""
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            try:
                header = next(reader, None)
                if header is None:
                    raise DataError(path, "file is empty (no header line)", line=1)
                header = [h.strip() for h in header]
                if tuple(header) != COLUMNS:
                    raise DataError(path, f"header must be {' '.join(COLUMNS)} (tab-separated); found {header}",
                                    line=1)
                return [(reader.line_num, row) for row in reader if any(f.strip() for f in row)]
            except UnicodeDecodeError as exc:
                raise DataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None

    def _parse(self, labels: Path, line: int, fields: list[str]) -> Utterance:
        if len(fields) != len(COLUMNS):
            raise DataError(labels, f"expected {len(COLUMNS)} tab-separated fields ({' '.join(COLUMNS)}), "
                                    f"got {len(fields)}", line=line)
        row = dict(zip(COLUMNS, (f.strip() for f in fields)))
        name = row["file_id"]
        m = _NAME.match(name)
        if not m:
            raise DataError(labels, f"file_id {name!r} does not follow <speaker>_<emotion>_<sentence>.wav", line=line)
        emotion = row["emotion"]
        label = lookup(NEMO_EMOTIONS, emotion, labels, "nEMO emotion", line=line)
        speaker = row["speaker_id"]
        if not speaker:
            raise DataError(labels, "empty speaker_id", line=line)
        if m["spk"] != speaker or m["emo"] != emotion:
            raise DataError(labels, f"file_id {name} disagrees with the row (speaker_id {speaker!r}, "
                                    f"emotion {emotion!r})", line=line)
        wav = self.root / AUDIO_DIR / name
        if not wav.is_file():
            raise DataError(labels, f"{AUDIO_DIR}/{name} listed here is missing", line=line)
        age = parse_float(row["age"], labels, "age", line=line, allow_empty=True)
        extra: dict[str, Any] = {"label_raw": emotion, "text": row["raw_text"] or None,
                                 "normalized_text": row["normalized_text"] or None, "sentence": m["sentence"],
                                 "gender": normalise_gender(row["gender"], labels, line),
                                 "age": None if age is None else int(age)}
        return Utterance(id=wav.stem, path=f"{AUDIO_DIR}/{name}", speaker=speaker, label=label,
                         corpus=self.name, extra=extra)
