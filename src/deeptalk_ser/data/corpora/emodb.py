"""Berlin EmoDB: ``wav/<spk><text><emotion><version>.wav`` (e.g. ``03a01Wa.wav``).

All seven emotions are kept; the task (ER/ED) decides which to use and how to map them.
"""

from __future__ import annotations

import re
from pathlib import Path

from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.data.corpora.base import CorpusLoader

#: German initials -> canonical emotion names.
EMODB_EMOTIONS = {
    "W": "angry",  # Wut
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}
MALE_SPEAKERS = {"03", "10", "11", "12", "15"}
_NAME = re.compile(r"^(?P<spk>\d\d)(?P<text>[ab]\d\d)(?P<emo>[A-Z])(?P<ver>[a-z])\.(?i:wav)$")  # .WAV too


class EmoDBCorpus(CorpusLoader):
    name = "emodb"
    def scan(self) -> list[Utterance]:
        wav_dir = self.require("wav")
        files = [p for p in sorted(wav_dir.iterdir())
                 if p.suffix.lower() == ".wav" and not p.name.startswith("._")]  # macOS resource forks
        utts = self.parse_each(files, self._parse)
        if not utts and not self.rejected:
            raise DataError(wav_dir, "no EmoDB .wav files found")
        return utts

    def _parse(self, p: Path) -> Utterance:
        m = _NAME.match(p.name)
        if not m:
            raise DataError(p, "file name does not follow <spk><text><emotion><version>.wav")
        emo = m["emo"]
        if emo not in EMODB_EMOTIONS:
            raise DataError(p, f"unknown EmoDB emotion letter {emo!r} (known: {''.join(EMODB_EMOTIONS)})")
        spk = m["spk"]
        return Utterance(id=p.stem, path=str(p.relative_to(self.root)), speaker=spk, label=EMODB_EMOTIONS[emo],
                         corpus=self.name, extra={"label_raw": emo, "text": m["text"], "version": m["ver"],
                                                  "gender": "m" if spk in MALE_SPEAKERS else "f"})
