"""Emotion-corpus trees in the distributed layouts (CREMA-D, IEMOCAP, MSP-Podcast, nEMO, RAVDESS, the
authors' embedding arrays), importable as plain builders (the loader tests' own trees are pytest
fixtures). Each builder reuses the file lists and label texts of the matching loader test, and
can widen them (all 91 CREMA-D actors, all 5 IEMOCAP sessions, all 24 RAVDESS actors) for the
protocol tests, which need every speaker of a corpus. Audio is a few ms of sine: loaders scan
layouts and label files only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .speaker_fixtures import write_audio, write_text
from .test_crema_d import CLIPS as CREMA_CLIPS, DEMOGRAPHICS as CREMA_DEMOGRAPHICS, VOTES as CREMA_VOTES
from .test_iemocap import EVALUATIONS as IEMOCAP_EVALUATIONS, EXPECTED as IEMOCAP_EXPECTED, HEADER as IEMOCAP_HEADER
from .test_iemocap import _eval_path as iemocap_eval_path, _wav_path as iemocap_wav_path
from .test_msp_podcast import LABELS as MSP_LABELS, _build as msp_build
from .test_nemo import ROWS as NEMO_ROWS, TSV as NEMO_TSV
from .test_ravdess import AV_FILE as RAVDESS_AV_FILE, FILES as RAVDESS_FILES

SECONDS = 0.02

# --------------------------------------------------------------------------- CREMA-D
CREMA_ACTORS = tuple(range(1001, 1092))
#: Sex of the generated actors: even ids are female except 1004 and 1006, giving the real
#: corpus's 48 male and 43 female actors (not its actual assignment).
CREMA_FEMALE = frozenset(a for a in CREMA_ACTORS if a % 2 == 0) - {1004, 1006}


def crema_sex(actor: int) -> str:
    return "Female" if actor in CREMA_FEMALE else "Male"


def build_crema_d(root: Path, actors: Iterable[int] | None = None,
                  emotions: Sequence[str] = ("ANG", "HAP", "NEU", "SAD", "DIS")) -> Path:
    """``actors`` None: the loader test's tree (5 clips of actors 1001, 1002, 1091, demographics
    and the stacked perception votes). Otherwise one clip (sentence DFA, level XX) per actor and
    emotion, and a demographics row per actor with sex from :func:`crema_sex`."""
    if actors is None:
        for stem in CREMA_CLIPS:
            write_audio(root / "AudioWAV" / f"{stem}.wav", seconds=SECONDS)
        write_text(root / "VideoDemographics.csv", CREMA_DEMOGRAPHICS)
        write_text(root / "processedResults" / "tabulatedVotes.csv", CREMA_VOTES)
        return root
    header = CREMA_DEMOGRAPHICS.splitlines()[0]
    rows = [header]
    for actor in actors:
        rows.append(f'{actor},30,"{crema_sex(actor)}","Caucasian","Not Hispanic"')
        for emo in emotions:
            write_audio(root / "AudioWAV" / f"{actor}_DFA_{emo}_XX.wav", seconds=SECONDS)
    write_text(root / "VideoDemographics.csv", "\n".join(rows) + "\n")
    return root


# --------------------------------------------------------------------------- IEMOCAP
#: Generated turns of one improvised dialog per extra session: (speaker letter, turn, code).
IEMOCAP_EXTRA_TURNS = (("F", "000", "neu"), ("M", "001", "ang"), ("F", "002", "exc"), ("M", "003", "sad"),
                       ("F", "004", "xxx"), ("M", "005", "hap"), ("F", "006", "fru"))


def build_iemocap(root: Path, sessions: Iterable[int] = (1, 2, 3, 4, 5)) -> Path:
    """Sessions 1 and 2 as in the loader test (its dialogs, annotator lines and wavs); any other
    session gets one dialog ``Ses0<n>F_impro01`` with :data:`IEMOCAP_EXTRA_TURNS`."""
    for session in sessions:
        if session in (1, 2):
            for (s, dialog), text in IEMOCAP_EVALUATIONS.items():
                if s == session:
                    write_text(iemocap_eval_path(root, s, dialog), text)
            utts = [u for u in IEMOCAP_EXPECTED if int(u[3:5]) == session]
        else:
            dialog = f"Ses0{session}F_impro01"
            lines, utts = [], []
            for k, (who, turn, code) in enumerate(IEMOCAP_EXTRA_TURNS):
                utt = f"{dialog}_{who}{turn}"
                lines.append(f"[{2.0 * k:.4f} - {2.0 * k + 1.5:.4f}]\t{utt}\t{code}\t[3.0000, 3.0000, 3.0000]\n"
                             "C-E1:\tNeutral;\t()\n\n")
                utts.append(utt)
            write_text(iemocap_eval_path(root, session, dialog), IEMOCAP_HEADER + "".join(lines))
        for utt in utts:
            write_audio(iemocap_wav_path(root, utt), seconds=SECONDS)
    return root


# --------------------------------------------------------------------------- MSP-Podcast
#: Rows added to the loader test's labels for the protocol tests: more Unknown speakers in Train
#: and Test1, a known Train speaker, and classes outside the 4-class task (U, C, O, X).
MSP_EXTRA_ROWS = """MSP-PODCAST_0010_0001.wav,A,5.0,2.0,5.0,Unknown,Unknown,Train
MSP-PODCAST_0010_0002.wav,S,2.0,2.0,2.0,Unknown,Male,Train
MSP-PODCAST_0010_0003.wav,N,3.0,4.0,3.0,512,Female,Train
MSP-PODCAST_0010_0004.wav,U,4.0,4.0,4.0,512,Female,Train
MSP-PODCAST_0011_0001.wav,H,4.0,6.0,4.0,Unknown,Unknown,Test1
MSP-PODCAST_0011_0002.wav,C,4.0,2.0,5.0,30,Male,Test1
MSP-PODCAST_0011_0003.wav,O,3.0,3.0,3.0,Unknown,Female,Test1
MSP-PODCAST_0011_0004.wav,X,3.0,3.0,3.0,Unknown,Unknown,Test1
MSP-PODCAST_0012_0001.wav,A,5.0,2.0,5.0,127,Female,Development
"""
MSP_LAYOUTS = {"1.8": ("AudioFiles/Audios_wav", "labels_concensus.csv"), "current": ("Audios", "labels_consensus.csv")}


def build_msp_podcast(root: Path, layout: str = "1.8", extra_rows: str = "") -> Path:
    """The loader test's tree (``_build``) in the release-1.8 layout (``AudioFiles/Audios_wav`` +
    the misspelt ``labels_concensus.csv``) or the ``current`` one, with ``extra_rows`` appended to
    its labels (e.g. :data:`MSP_EXTRA_ROWS`, whose wavs are written too)."""
    audio_dir, labels_name = MSP_LAYOUTS[layout]
    msp_build(root, audio_dir, labels_name, write_audio, write_text, labels=MSP_LABELS + extra_rows)
    for row in extra_rows.splitlines():
        write_audio(root / audio_dir / row.split(",")[0], seconds=SECONDS)
    return root


# --------------------------------------------------------------------------- RAVDESS
RAVDESS_ACTORS = tuple(range(1, 25))


def build_ravdess(root: Path, actors: Iterable[int] | None = None,
                  emotions: Sequence[str] = ("01", "03", "04", "05")) -> Path:
    """``actors`` None: the loader test's tree (speech, song and one audio-video take of actors
    01, 02, 24). Otherwise, per actor, one audio-only speech file per emotion code."""
    if actors is None:
        for rel in [*RAVDESS_FILES, RAVDESS_AV_FILE]:
            write_audio(root / rel, seconds=SECONDS, sr=48000)
        return root
    for actor in actors:
        for emo in emotions:
            intensity = "01" if emo == "01" else "02"
            write_audio(root / f"Actor_{actor:02d}" / f"03-01-{emo}-{intensity}-01-01-{actor:02d}.wav",
                        seconds=SECONDS, sr=48000)
    return root


# --------------------------------------------------------------------------- nEMO
def build_nemo(root: Path) -> Path:
    """The loader test's tree: ``samples/*.wav`` and ``data.tsv`` (UTF-8, space-padded speaker ids)."""
    for row in NEMO_ROWS:
        write_audio(root / "samples" / row[0], seconds=SECONDS)
    write_text(root / "data.tsv", NEMO_TSV)
    return root


# --------------------------------------------------------------------------- precomputed arrays
def build_embedding_arrays(root: Path, n_train: int = 8, n_test: int = 4, dim: int = 4) -> Path:
    """``all_{train,test}_{x,y}.npy`` as the authors saved them (codes 1 happy 2 sad 3 neutral 5 angry)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    codes = np.array([1, 2, 3, 5])
    for prefix, n in (("all_train", n_train), ("all_test", n_test)):
        np.save(root / f"{prefix}_x.npy", rng.standard_normal((n, dim)).astype(np.float32))
        np.save(root / f"{prefix}_y.npy", codes[np.arange(n) % 4].astype(np.int64))
    return root


# ---------------------------------------------------------------- bring-your-own corpora
USER_LABELS = ("angry", "neutral", "sad")
USER_SPEAKERS = ("spk01", "spk02", "spk03")


def build_label_folders(root: Path, takes: int = 2, seconds: float = 0.2) -> Path:
    """``data=folder`` layout: ``<root>/<label>/<speaker>_take<n>.wav`` (3 labels x 3 speakers)."""
    for label in USER_LABELS:
        for spk in USER_SPEAKERS:
            for t in range(takes):
                write_audio(root / label / f"{spk}_take{t}.wav", seconds=seconds, sr=16000)
    return root


def build_user_manifest(path: Path, seconds: float = 0.2) -> Path:
    """``data=manifest``: a CSV beside its audio (relative paths), with a split and an extra column."""
    rows = ["path,speaker,label,split,mic"]
    for i, spk in enumerate(USER_SPEAKERS):
        for label in USER_LABELS:
            rel = f"audio/{spk}/{label}.wav"
            write_audio(path.parent / rel, seconds=seconds, sr=16000)
            rows.append(f"{rel},{spk},{label},{'test' if i == 2 else 'train'},lavalier")
    write_text(path, "\n".join(rows) + "\n")
    return path
