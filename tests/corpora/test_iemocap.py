"""IEMOCAP loader on a fixture tree in the release layout (Session<n>/sentences/wav/<dialog>/,
Session<n>/dialog/EmoEvaluation/<dialog>.txt with annotator lines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deeptalk_ser.data.corpora.iemocap import IemocapCorpus
from deeptalk_ser.utils.errors import DataError

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
EVALUATIONS = {
    (1, "Ses01F_impro01"): HEADER + (
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
        "C-E2:\tNeutral;\t()\n"
        "C-E3:\tNeutral;\t()\n"
        "C-F1:\tNeutral;\t(curious)\n"
        "A-E3:\tval 3; act 2; dom  2;\t()\n"
        "A-F1:\tval 3; act 2; dom  1;\t()\n"
        "\n"
        "[10.0100 - 11.3925]\tSes01F_impro01_M003\tfru\t[2.0000, 3.5000, 3.0000]\n"
        "C-E1:\tFrustration; Anger;\t()\n"
        "C-M1:\tFrustration;\t()\n"
        "A-E1:\tval 2; act 4; dom  3;\t()\n"
        "\n"
        "[14.8872 - 18.0175]\tSes01F_impro01_F001\texc\t[4.0000, 3.5000, 3.0000]\n"
        "C-E2:\tExcited;\t()\n"
    ),
    (1, "Ses01F_script01_1"): HEADER + (
        "[0.0100 - 2.5000]\tSes01F_script01_1_M002\txxx\t[3.0000, 2.0000, 2.5000]\n"
        "C-E1:\tNeutral;\t()\n"
        "C-E2:\tSadness;\t()\n"
        "\n"
        "[3.1000 - 5.2500]\tSes01F_script01_1_F005\thap\t[4.5000, 3.0000, 3.0000]\n"
    ),
    (2, "Ses02M_impro03"): HEADER + (
        "[1.5000 - 3.0000]\tSes02M_impro03_F000\tang\t[1.5000, 4.0000, 4.5000]\n"
        "\n"
        "[3.5000 - 6.0000]\tSes02M_impro03_M001\tsad\t[2.0000, 1.5000, 2.0000]\n"
    ),
}
EXPECTED = {  # utterance -> (speaker, label, session, gender, improvised)
    "Ses01F_impro01_F000": ("Ses01F", "neutral", 1, "f", True),
    "Ses01F_impro01_M003": ("Ses01M", "frustrated", 1, "m", True),
    "Ses01F_impro01_F001": ("Ses01F", "excited", 1, "f", True),
    "Ses01F_script01_1_M002": ("Ses01M", None, 1, "m", False),
    "Ses01F_script01_1_F005": ("Ses01F", "happy", 1, "f", False),
    "Ses02M_impro03_F000": ("Ses02F", "angry", 2, "f", True),
    "Ses02M_impro03_M001": ("Ses02M", "sad", 2, "m", True),
}


def _eval_path(root: Path, session: int, dialog: str) -> Path:
    return root / f"Session{session}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"


def _wav_path(root: Path, utt: str) -> Path:
    dialog = utt.rsplit("_", 1)[0]
    return root / f"Session{int(utt[3:5])}" / "sentences" / "wav" / dialog / f"{utt}.wav"


@pytest.fixture
def iemocap_root(tmp_path: Path, write_wav, write_file) -> Path:
    root = tmp_path / "IEMOCAP_full_release"
    for (session, dialog), text in EVALUATIONS.items():
        write_file(_eval_path(root, session, dialog), text)
    # per-annotator files live in sub-folders and must not be read as summary files
    write_file(root / "Session1/dialog/EmoEvaluation/Categorical/Ses01F_impro01_e1_cat.txt",
               ":Neutral state; ()\n[bogus\n")
    for utt in EXPECTED:
        write_wav(_wav_path(root, utt), seconds=0.1)
    return root


def test_speakers_labels_and_extras(iemocap_root: Path) -> None:
    loader = IemocapCorpus(iemocap_root, sessions=[1, 2])
    utts = {u.id: u for u in loader.scan()}
    assert loader.warnings == []
    assert {k: (u.speaker, u.label, u.extra["session"], u.extra["gender"], u.extra["improvised"])
            for k, u in utts.items()} == EXPECTED
    m003 = utts["Ses01F_impro01_M003"]
    assert m003.path == "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M003.wav"
    assert m003.split is None
    assert m003.extra == {"label_raw": "fru", "session": 1, "dialog": "Ses01F_impro01", "gender": "m",
                          "improvised": True, "start": 10.01, "end": 11.3925,
                          "valence": 2.0, "activation": 3.5, "dominance": 3.0}
    assert utts["Ses01F_script01_1_M002"].extra["label_raw"] == "xxx"
    assert utts["Ses01F_impro01_F001"].extra["label_raw"] == "exc"


def test_all_sessions_required_by_default(iemocap_root: Path) -> None:
    with pytest.raises(DataError, match=r"Session3/dialog/EmoEvaluation: expected by the iemocap layout"):
        IemocapCorpus(root=iemocap_root).scan()


def test_dimension_order_follows_file_header(iemocap_root: Path, write_file) -> None:
    path = _eval_path(iemocap_root, 2, "Ses02M_impro03")
    write_file(path, EVALUATIONS[(2, "Ses02M_impro03")].replace("[V, A, D]", "[A, V, D]"))
    utt = {u.id: u for u in IemocapCorpus(iemocap_root, sessions=[2]).scan()}["Ses02M_impro03_F000"]
    assert (utt.extra["activation"], utt.extra["valence"], utt.extra["dominance"]) == (1.5, 4.0, 4.5)


def test_label_without_wav_skipped_or_strict(iemocap_root: Path) -> None:
    _wav_path(iemocap_root, "Ses01F_impro01_M003").unlink()
    loader = IemocapCorpus(iemocap_root, sessions=[1, 2])
    ids = {u.id for u in loader.scan()}
    assert len(ids) == len(EXPECTED) - 1 and "Ses01F_impro01_M003" not in ids
    assert len(loader.warnings) == 1 and "Ses01F_impro01_M003" in loader.warnings[0]
    with pytest.raises(DataError, match=r"Ses01F_impro01\.txt: label for Ses01F_impro01_M003 but no wav"):
        IemocapCorpus(iemocap_root, sessions=[1, 2], strict=True).scan()


def test_wav_without_label_skipped_or_strict(iemocap_root: Path, write_wav) -> None:
    write_wav(_wav_path(iemocap_root, "Ses01F_impro01_F099"))
    loader = IemocapCorpus(iemocap_root, sessions=[1])
    assert len(loader.scan()) == 5 and len(loader.warnings) == 1
    with pytest.raises(DataError, match=r"Ses01F_impro01_F099\.wav: wav Ses01F_impro01_F099 has no summary line"):
        IemocapCorpus(iemocap_root, sessions=[1], strict=True).scan()


@pytest.mark.parametrize("bad_line, lineno, problem", [
    ("[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\n", 3, "malformed summary line"),  # no ratings
    ("[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000]\n", 3, "expected 3 dimensional ratings"),
    ("[6.2901 - 8.2357]\tSes01F_impro01_F000\tbor\t[2.5, 2.5, 2.5]\n", 3, "unknown IEMOCAP emotion code 'bor'"),
    ("[6.2901 - 8.2357]\tSes01F_impro02_F000\tneu\t[2.5, 2.5, 2.5]\n", 3, "utterance id .Ses01F_impro02_F000. does not belong to dialog"),
])
def test_bad_summary_line_names_file_and_line(iemocap_root: Path, write_file, bad_line: str, lineno: int,
                                              problem: str) -> None:
    path = _eval_path(iemocap_root, 1, "Ses01F_impro01")
    good = "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
    write_file(path, EVALUATIONS[(1, "Ses01F_impro01")].replace(good, bad_line))
    with pytest.raises(DataError, match=rf"Ses01F_impro01\.txt:{lineno}: {problem}") as err:
        IemocapCorpus(iemocap_root, sessions=[1]).scan()
    assert err.value.line == lineno and err.value.path == str(path)


def test_bad_sessions_option(iemocap_root: Path) -> None:
    with pytest.raises(ValueError, match="sessions"):
        IemocapCorpus(iemocap_root, sessions=[6])
