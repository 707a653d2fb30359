"""Generic Kaldi data directory (``wav.scp``, ``utt2spk``, optional ``spk2gender``, ``text``).

``wav.scp`` paths may be relative to the corpus root (as speechocean762 ships them). Piped
commands (``... |``) and ``segments`` are refused with a clear message rather than misread.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.data.corpora._common import iter_lines
from deeptalk_ser.data.corpora.base import CorpusLoader

log = logging.getLogger(__name__)


def read_kaldi_map(path: Path, required: bool = True) -> dict[str, str]:
    """Read a two-column Kaldi map (``key value...``), refusing duplicate keys."""
    if not path.is_file() and not required:
        return {}
    out: dict[str, str] = {}
    for lineno, line in iter_lines(path):
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise DataError(path, "expected '<key> <value>'", line=lineno)
        key, value = parts
        if key in out:
            raise DataError(path, f"duplicate key {key!r}", line=lineno)
        out[key] = value.strip()
    return out


class KaldiCorpus(CorpusLoader):
    """``subsets`` are data directories below ``root`` (e.g. ``["train", "test"]``); each becomes
    the manifest ``split`` of its utterances."""
    name = "kaldi"

    def __init__(self, root: str | Path, subsets: Sequence[str] = ("train", "test")) -> None:
        super().__init__(root)
        self.subsets = list(subsets)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "subsets": self.subsets}

    def scan(self) -> list[Utterance]:
        utts = []
        first_seen: dict[str, Path] = {}  # utterance id -> the wav.scp that listed it first
        speaker_splits: dict[str, list[str]] = {}
        for subset in self.subsets:
            d = self.require(subset)
            if (d / "segments").exists():
                raise DataError(d / "segments", "Kaldi 'segments' files are not supported; cut the segments to files first")
            wav_scp = read_kaldi_map(d / "wav.scp")
            utt2spk = read_kaldi_map(d / "utt2spk")
            spk2gender = read_kaldi_map(d / "spk2gender", required=False)
            text = read_kaldi_map(d / "text", required=False)
            for utt, rel in sorted(wav_scp.items()):
                if utt in first_seen:
                    raise DataError(d / "wav.scp", f"utterance id {utt!r} is also listed in {first_seen[utt]}: "
                                                   "ids must be unique across the data directories")
                first_seen[utt] = d / "wav.scp"
                if rel.endswith("|"):
                    raise DataError(d / "wav.scp", f"utterance {utt}: piped commands are not supported")
                if utt not in utt2spk:
                    raise DataError(d / "utt2spk", f"utterance {utt} from wav.scp has no speaker")
                spk = utt2spk[utt]
                if subset not in speaker_splits.setdefault(spk, []):
                    speaker_splits[spk].append(subset)
                extra: dict[str, Any] = {}
                if spk in spk2gender:
                    extra["gender"] = spk2gender[spk]
                if utt in text:
                    extra["text"] = text[utt]
                path = Path(rel)
                utts.append(Utterance(id=utt, path=str(path), speaker=spk, split=subset,
                                      corpus=self.name, extra=extra))
        shared = sorted(s for s, splits in speaker_splits.items() if len(splits) > 1)
        if shared:  # legal for Kaldi, but a train/test split that shares speakers is not speaker-independent
            log.warning("%s: %d speaker(s) appear in more than one of %s (e.g. %s): splitting by directory "
                        "is not speaker-independent (an encoder trained on one would be verified on its own "
                        "speakers; emotion folds that share them are refused)", self.root, len(shared),
                        self.subsets, shared[:5])
        return utts
