"""IEMOCAP: ``Session{1..5}/sentences/wav/<dialog>/<utt>.wav`` labelled by
``Session{1..5}/dialog/EmoEvaluation/<dialog>.txt``.

Only *summary* lines of an EmoEvaluation file are read: tab-separated lines starting with ``[``::

    [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]

Annotator lines (``C-E1:``, ``A-E2:`` ...), the ``%`` header and blank lines are skipped; a
``[`` line that does not parse is a DataError naming file and line.

Conventions:

- speaker = session + the LAST F/M of the utterance id, the one right before the turn index:
  ``Ses01F_impro01_M012`` -> ``Ses01M``. The F/M after ``Ses01`` names the dialog's lead
  actor, not who speaks the turn.
- labels are not merged: ``exc`` -> ``excited`` (the 4-class task maps excited -> happy),
  ``fru`` -> ``frustrated``, ``oth`` -> ``other``, ``xxx`` (no majority) -> None.
- dimensional ratings (means on 1-5) go to ``valence``/``activation``/``dominance``. Their
  order inside the bracket is taken from the file's ``%`` header when it names it (the
  release's header reads ``[V, A, D]``), else :data:`DEFAULT_DIMENSION_ORDER`. This order is
  "well known but not re-verified" in docs/corpora.md, hence the header check.
- ``split`` is None: IEMOCAP has no official split; protocols use ``session`` (1..5).
- other extras: ``label_raw``, ``session`` (int), ``dialog``, ``gender`` (of the speaker, f/m),
  ``improvised`` (bool; False = scripted), ``start``/``end`` (s, within the dialog).

Missing pairs: a label line whose wav is absent, and a wav with no label line, are errors
with ``strict=True``; otherwise they are skipped, counted in :attr:`IemocapCorpus.warnings`
and logged once per scan (copies of IEMOCAP missing a few files are common and the label
files remain the authority on what exists).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Sequence

from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.data.corpora._common import list_files, lookup, parse_float
from deeptalk_ser.data.corpora.base import CorpusLoader

log = logging.getLogger(__name__)

IEMOCAP_EMOTIONS: dict[str, str | None] = {
    "neu": "neutral", "hap": "happy", "exc": "excited", "sad": "sad", "ang": "angry",
    "fru": "frustrated", "fea": "fear", "sur": "surprise", "dis": "disgust", "oth": "other",
    "xxx": None,
}
#: Order of the three ratings in a summary line's last bracket, used when the file's header
#: does not state it. The release header says ``[V, A, D]`` (docs/corpora.md marks it "check").
DEFAULT_DIMENSION_ORDER = ("valence", "activation", "dominance")
_DIMENSION_LETTERS = {"V": "valence", "A": "activation", "D": "dominance"}
SESSIONS = (1, 2, 3, 4, 5)

_SUMMARY = re.compile(
    r"^\[\s*(?P<start>[-+\d.eE]+)\s*-\s*(?P<end>[-+\d.eE]+)\s*\]\t+(?P<utt>\S+)\t+(?P<emo>\S+)\t+"
    r"\[(?P<dims>[^\]]*)\]\s*$")
_HEADER_DIMS = re.compile(r"\[\s*([VAD])\s*,\s*([VAD])\s*,\s*([VAD])\s*\]")
#: ``Ses01F_impro01_M012`` / ``Ses01F_script01_1_F003``: session digits, then the speaker's
#: F/M right before the turn index (the last underscore-separated part).
_UTT = re.compile(r"^Ses(?P<session>\d\d)[FM]_.+_(?P<gender>[FM])[^_]+$")


class IemocapCorpus(CorpusLoader):
    """``sessions``: which of Session1..5 to read (all by default; a missing one is an error).
    ``strict``: make label/audio mismatches errors instead of counted skips."""
    name = "iemocap"

    def __init__(self, root: str | Path, sessions: Sequence[int] = SESSIONS, strict: bool = False) -> None:
        super().__init__(root)
        self.sessions = sorted({int(s) for s in sessions})
        if not self.sessions or any(s not in SESSIONS for s in self.sessions):
            raise ValueError(f"sessions must be a non-empty subset of {list(SESSIONS)}, got {list(sessions)}")
        self.strict = strict
        #: Human-readable notes about skipped utterances from the last :meth:`scan`.
        self.warnings: list[str] = []

    def options(self) -> dict[str, Any]:
        return {**super().options(), "sessions": self.sessions, "strict": self.strict}

    def scan(self) -> list[Utterance]:
        self.warnings = []
        utts: list[Utterance] = []
        for session in self.sessions:
            utts.extend(self._scan_session(session))
        if self.warnings:
            log.warning("iemocap: %d utterance(s) skipped, e.g. %s", len(self.warnings), self.warnings[0])
        if not utts:
            raise DataError(self.root, "no labelled IEMOCAP utterances with audio found")
        return utts

    def _scan_session(self, session: int) -> list[Utterance]:
        eval_dir = self.require(f"Session{session}/dialog/EmoEvaluation")
        wav_root = self.require(f"Session{session}/sentences/wav")
        wavs = {p.stem: p for d in sorted(wav_root.iterdir()) if d.is_dir() for p in list_files(d)}
        utts = []
        seen: dict[str, Path] = {}
        for label_file in list_files(eval_dir, suffix=".txt"):
            for utt in self._parse_evaluation(label_file, session, seen):
                wav = wavs.pop(utt.id, None)
                if wav is None:
                    self._mismatch(label_file, f"label for {utt.id} but no wav in {wav_root}")
                    continue
                utt.path = str(wav.relative_to(self.root))
                utts.append(utt)
        for stem, wav in sorted(wavs.items()):
            self._mismatch(wav, f"wav {stem} has no summary line in {eval_dir}")
        return utts

    def _mismatch(self, path: Path, problem: str) -> None:
        if self.strict:
            raise DataError(path, problem)
        self.warnings.append(f"{path}: {problem}")

    def _parse_evaluation(self, path: Path, session: int, seen: dict[str, Path]) -> list[Utterance]:
        """Summary lines of one ``<dialog>.txt`` -> utterances (path filled in by the caller).
        ``seen`` maps the session's ids read so far to their file, to refuse duplicates."""
        dialog = path.stem
        order = DEFAULT_DIMENSION_ORDER
        utts = []
        with open(path, encoding="utf-8", errors="replace") as fh:  # annotator comments may hold odd bytes
            for lineno, raw in enumerate(fh, 1):
                line = raw.rstrip("\r\n")
                if line.startswith("%"):
                    header = _HEADER_DIMS.search(line)
                    if header:
                        order = tuple(_DIMENSION_LETTERS[c] for c in header.groups())  # type: ignore[assignment]
                        if len(set(order)) != 3:
                            raise DataError(path, f"header names a dimension twice: {header.group(0)}", line=lineno)
                    continue
                if not line.startswith("["):
                    continue
                m = _SUMMARY.match(line)
                if not m:
                    raise DataError(path, "malformed summary line (expected "
                                          "'[start - end]<TAB>utterance<TAB>emotion<TAB>[v, a, d]')", line=lineno)
                utt_id = m["utt"]
                ids = _UTT.match(utt_id)
                if not ids or not utt_id.startswith(dialog + "_"):
                    raise DataError(path, f"utterance id {utt_id!r} does not belong to dialog {dialog}", line=lineno)
                if int(ids["session"]) != session:
                    raise DataError(path, f"utterance {utt_id} is not from Session{session}", line=lineno)
                if utt_id in seen:
                    raise DataError(path, f"second summary line for {utt_id} (first in {seen[utt_id].name})",
                                    line=lineno)
                seen[utt_id] = path
                dims = m["dims"].split(",")
                if len(dims) != 3:
                    raise DataError(path, f"expected 3 dimensional ratings, got {len(dims)}", line=lineno)
                emo = m["emo"]
                extra: dict[str, Any] = {
                    "label_raw": emo,
                    "session": session,
                    "dialog": dialog,
                    "gender": ids["gender"].lower(),
                    "improvised": "_impro" in dialog,
                    "start": parse_float(m["start"], path, "start", line=lineno),
                    "end": parse_float(m["end"], path, "end", line=lineno),
                }
                for name, value in zip(order, dims):
                    extra[name] = parse_float(value, path, name, line=lineno)
                utts.append(Utterance(
                    id=utt_id, path="", speaker=f"Ses{ids['session']}{ids['gender']}",
                    label=lookup(IEMOCAP_EMOTIONS, emo, path, "IEMOCAP emotion code", line=lineno),
                    corpus=self.name, extra=extra))
        return utts
