"""RAVDESS: ``Actor_XX/MM-VV-EE-II-SS-RR-AA.wav`` (e.g. ``Actor_01/03-01-05-02-01-01-01.wav``).

The seven two-digit fields are modality (03 audio-only), vocal channel (01 speech, 02 song),
emotion (01..08), intensity (01 normal, 02 strong), statement (01, 02), repetition (01, 02) and
actor (01..24; odd male, even female). Speaker = the two-digit actor (``"01"``); the folder's
actor must match the file name's. No official split (protocols fold over actors).

Labels are kept fine-grained (``calm`` is not merged into neutral; the task layer decides).
Extras: ``label_raw`` (the emotion field), ``gender``, ``vocal_channel`` (speech/song),
``intensity`` (normal/strong), ``statement``, ``repetition``, ``modality``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.data.corpora._common import check_choice, list_files, lookup
from deeptalk_ser.data.corpora.base import CorpusLoader

RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fear",
                    "07": "disgust", "08": "surprise"}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
INTENSITIES = {"01": "normal", "02": "strong"}
MODALITIES = {"01": "audio-video", "02": "video-only", "03": "audio-only"}
AUDIO_ONLY = "03"
_BINARY = ("01", "02")
_NAME = re.compile(r"^(?P<modality>\d\d)-(?P<channel>\d\d)-(?P<emotion>\d\d)-(?P<intensity>\d\d)-"
                   r"(?P<statement>\d\d)-(?P<repetition>\d\d)-(?P<actor>\d\d)\.wav$", re.IGNORECASE)
_ACTOR_DIR = re.compile(r"^Actor_(?P<actor>\d\d)$")


class RavdessCorpus(CorpusLoader):
    """``vocal_channel``: ``speech`` (default, the 1,440-file SER set) | ``song`` | ``both``.
    ``modality``: keep only this modality code (``"03"`` audio-only by default; None keeps all)."""
    name = "ravdess"

    def __init__(self, root: str | Path, vocal_channel: str = "speech", modality: str | None = AUDIO_ONLY) -> None:
        super().__init__(root)
        check_choice(vocal_channel, ("speech", "song", "both"), "vocal_channel")
        if modality is not None:
            modality = f"{int(modality):02d}"  # YAML may hand over 3 for "03"
            check_choice(modality, tuple(MODALITIES), "modality")
        self.vocal_channel = vocal_channel
        self.modality = modality

    def options(self) -> dict[str, Any]:
        return {**super().options(), "vocal_channel": self.vocal_channel, "modality": self.modality}

    def scan(self) -> list[Utterance]:
        actor_dirs = sorted(d for d in self.root.iterdir() if d.is_dir() and _ACTOR_DIR.match(d.name))
        if not actor_dirs:
            raise DataError(self.root, "no Actor_XX folders found (set root to the folder holding Actor_01 ...)")
        utts = []
        files = [(p, _ACTOR_DIR.match(d.name)["actor"]) for d in actor_dirs for p in list_files(d)]  # type: ignore[index]
        folder_actor = dict(files)
        for utt in self.parse_each([p for p, _ in files], lambda p: self._parse(p, folder_actor[p])):
            if self.modality is not None and utt.extra["modality"] != self.modality:
                continue
            if self.vocal_channel != "both" and utt.extra["vocal_channel"] != self.vocal_channel:
                continue
            utts.append(utt)
        if not utts and not self.rejected:
            raise DataError(self.root, f"no RAVDESS .wav files match vocal_channel={self.vocal_channel!r}, "
                                       f"modality={self.modality!r}")
        return utts

    def _parse(self, p: Path, dir_actor: str) -> Utterance:
        m = _NAME.match(p.name)
        if not m:
            raise DataError(p, "file name does not follow MM-VV-EE-II-SS-RR-AA.wav (e.g. 03-01-05-02-01-01-01.wav)")
        actor = m["actor"]
        if actor != dir_actor:
            raise DataError(p, f"actor {actor} in the file name but the folder is Actor_{dir_actor}")
        if not 1 <= int(actor) <= 24:
            raise DataError(p, f"actor {actor} outside 01-24")
        for field in ("statement", "repetition"):
            if m[field] not in _BINARY:
                raise DataError(p, f"{field} code {m[field]!r} is not 01 or 02")
        lookup(MODALITIES, m["modality"], p, "RAVDESS modality code")
        return Utterance(
            id=p.stem,
            path=str(p.relative_to(self.root)),
            speaker=actor,
            label=lookup(RAVDESS_EMOTIONS, m["emotion"], p, "RAVDESS emotion code"),
            corpus=self.name,
            extra={"label_raw": m["emotion"],
                   "gender": "m" if int(actor) % 2 else "f",
                   "vocal_channel": lookup(VOCAL_CHANNELS, m["channel"], p, "RAVDESS vocal channel code"),
                   "intensity": lookup(INTENSITIES, m["intensity"], p, "RAVDESS intensity code"),
                   "statement": m["statement"], "repetition": m["repetition"], "modality": m["modality"]})
