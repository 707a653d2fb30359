"""CREMA-D loader on a fixture tree in the release layout (AudioWAV/, VideoDemographics.csv,
processedResults/tabulatedVotes.csv with its three stacked rating conditions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deeptalk_ser.data.corpora.crema_d import CremaDCorpus
from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.manifest import read_manifest
from deeptalk_ser.data.prepare import prepare_manifest

CLIPS = {  # file stem -> seconds of generated audio
    "1001_DFA_ANG_XX": 0.20,
    "1001_IEO_HAP_HI": 0.30,
    "1002_TIE_NEU_XX": 0.25,
    "1002_IEO_SAD_LO": 0.35,
    "1091_WSI_DIS_XX": 0.40,
}
DEMOGRAPHICS = '''"ActorID","Age","Sex","Race","Ethnicity"
1001,51,"Male","Caucasian","Not Hispanic"
1002,21,"Female","Caucasian","Not Hispanic"
1091,29,"Female","Asian","Not Hispanic"
'''
# R's write.csv: an unnamed, quoted row-name column = 100000 * queryType + clipNum
# (1 voice-only, 2 face-only, 3 audio-visual). Face/AV votes differ on purpose.
VOTES = '''"","A","D","F","H","N","S","fileName","numResponses","agreement","emoVote"
"100001",6,0,0,0,4,0,"1001_DFA_ANG_XX",10,0.6,"A"
"100002",0,0,0,2,8,0,"1001_IEO_HAP_HI",10,0.8,"N"
"100003",0,0,0,0,9,1,"1002_TIE_NEU_XX",10,0.9,"N"
"100004",4,4,0,0,0,2,"1002_IEO_SAD_LO",10,0.4,"A:D"
"100005",0,7,0,0,3,0,"1091_WSI_DIS_XX",10,0.7,"D"
"200001",0,0,0,10,0,0,"1001_DFA_ANG_XX",10,1,"H"
"200002",0,0,0,10,0,0,"1001_IEO_HAP_HI",10,1,"H"
"200003",0,0,0,0,10,0,"1002_TIE_NEU_XX",10,1,"N"
"200004",0,0,0,0,0,10,"1002_IEO_SAD_LO",10,1,"S"
"200005",0,10,0,0,0,0,"1091_WSI_DIS_XX",10,1,"D"
"300004",0,0,0,0,0,10,"1002_IEO_SAD_LO",10,1,"S"
'''


@pytest.fixture
def crema_root(tmp_path: Path, write_wav, write_file) -> Path:
    root = tmp_path / "CREMA-D"
    for stem, seconds in CLIPS.items():
        write_wav(root / "AudioWAV" / f"{stem}.wav", seconds=seconds)
    (root / "AudioWAV" / "._1001_DFA_ANG_XX.wav").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    write_file(root / "VideoDemographics.csv", DEMOGRAPHICS)
    write_file(root / "processedResults" / "tabulatedVotes.csv", VOTES)
    return root


def test_acted_labels_speakers_and_extras(crema_root: Path) -> None:
    utts = {u.id: u for u in CremaDCorpus(crema_root).scan()}
    assert sorted(utts) == sorted(CLIPS)
    assert {u: x.label for u, x in utts.items()} == {
        "1001_DFA_ANG_XX": "angry", "1001_IEO_HAP_HI": "happy", "1002_TIE_NEU_XX": "neutral",
        "1002_IEO_SAD_LO": "sad", "1091_WSI_DIS_XX": "disgust"}
    hi = utts["1001_IEO_HAP_HI"]
    assert hi.speaker == "1001" and hi.split is None and hi.path == "AudioWAV/1001_IEO_HAP_HI.wav"
    assert hi.extra == {"label_raw": "HAP", "label_acted": "happy", "sentence": "IEO", "level": "HI",
                        "gender": "m", "age": 51}
    assert utts["1002_IEO_SAD_LO"].extra["level"] == "LO"
    assert {u.speaker: u.extra["gender"] for u in utts.values()} == {"1001": "m", "1002": "f", "1091": "f"}


def test_perceived_reads_voice_only_votes_and_ties(crema_root: Path) -> None:
    loader = CremaDCorpus(root=crema_root, labels="perceived")
    utts = {u.id: u for u in loader.scan()}
    assert {u: x.label for u, x in utts.items()} == {
        "1001_DFA_ANG_XX": "angry", "1001_IEO_HAP_HI": "neutral", "1002_TIE_NEU_XX": "neutral",
        "1002_IEO_SAD_LO": None, "1091_WSI_DIS_XX": "disgust"}
    tie = utts["1002_IEO_SAD_LO"].extra
    assert tie["label_raw"] == "A:D" and tie["vote_tie"] is True and tie["label_acted"] == "sad"
    assert tie["vote_agreement"] == pytest.approx(0.4)
    assert loader.options()["labels"] == "perceived" and loader.options()["vote_modality"] == "voice"
    face = {u.id: u.label for u in CremaDCorpus(crema_root, labels="perceived", vote_modality="face").scan()}
    assert face["1001_DFA_ANG_XX"] == "happy" and face["1002_IEO_SAD_LO"] == "sad"


def test_perceived_clip_without_vote_row_is_named(crema_root: Path, write_file) -> None:
    write_file(crema_root / "processedResults" / "tabulatedVotes.csv", "\n".join(VOTES.splitlines()[:3]) + "\n")
    with pytest.raises(DataError, match=r"tabulatedVotes\.csv: no voice vote row for clip 1002_IEO_SAD_LO"):
        CremaDCorpus(crema_root, labels="perceived").scan()


def test_votes_without_emovote_column(crema_root: Path, write_file) -> None:
    write_file(crema_root / "processedResults" / "tabulatedVotes.csv",
               '"","fileName","vote"\n"100001","1001_DFA_ANG_XX","A"\n')
    with pytest.raises(DataError, match=r"tabulatedVotes\.csv:1: header lacks column\(s\) \['emoVote'\]"):
        CremaDCorpus(crema_root, labels="perceived").scan()


def test_unknown_vote_letter_names_line(crema_root: Path, write_file) -> None:
    write_file(crema_root / "processedResults" / "tabulatedVotes.csv", VOTES.replace('"A:D"', '"A:Q"'))
    with pytest.raises(DataError, match=r"tabulatedVotes\.csv:5: unknown emoVote emotion 'Q'"):
        CremaDCorpus(crema_root, labels="perceived").scan()


@pytest.mark.parametrize("bad", ["1001_DFA_ANG.wav", "1001_XYZ_ANG_XX.wav", "1001_DFA_BOR_XX.wav",
                                 "1001_IEO_ANG_ZZ.wav"])
def test_bad_file_name_is_named(crema_root: Path, write_wav, bad: str) -> None:
    write_wav(crema_root / "AudioWAV" / bad)
    with pytest.raises(DataError, match=bad.replace(".", r"\.")):
        CremaDCorpus(crema_root).scan()


def test_actor_missing_from_demographics(crema_root: Path, write_wav) -> None:
    write_wav(crema_root / "AudioWAV" / "1050_DFA_ANG_XX.wav")
    with pytest.raises(DataError, match=r"VideoDemographics\.csv: no row for actor 1050"):
        CremaDCorpus(crema_root).scan()


def test_bad_option_fails_early(crema_root: Path) -> None:
    with pytest.raises(ValueError, match="labels"):
        CremaDCorpus(crema_root, labels="voted")


def test_prepare_fills_durations_from_headers(crema_root: Path, tmp_path: Path) -> None:
    report = prepare_manifest(CremaDCorpus(crema_root), tmp_path / "out")
    assert report.n_utterances == len(CLIPS) and not report.reused
    utts = read_manifest(report.manifest)
    assert {u.id: u.duration for u in utts} == pytest.approx(CLIPS)
    assert {u.sample_rate for u in utts} == {16000}
    assert all(Path(u.path).is_absolute() and Path(u.path).is_file() for u in utts)
    assert prepare_manifest(CremaDCorpus(crema_root), tmp_path / "out").reused


def test_votes_without_row_index_column(crema_root: Path, write_file) -> None:
    """A reduced votes table (fileName + emoVote only) works when it holds one row per clip,
    and is refused when rows repeat, since the rating conditions cannot be told apart."""
    rows = [line.split(",") for line in VOTES.splitlines()[1:6]]
    reduced = "fileName,emoVote\n" + "".join(f"{r[7]},{r[10]}\n" for r in rows)
    write_file(crema_root / "processedResults" / "tabulatedVotes.csv", reduced)
    labels = {u.id: u.label for u in CremaDCorpus(crema_root, labels="perceived").scan()}
    assert labels["1001_IEO_HAP_HI"] == "neutral" and labels["1002_IEO_SAD_LO"] is None
    write_file(crema_root / "processedResults" / "tabulatedVotes.csv", reduced + '"1001_DFA_ANG_XX","H"\n')
    with pytest.raises(DataError, match=r"tabulatedVotes\.csv:7: second vote row for clip 1001_DFA_ANG_XX"):
        CremaDCorpus(crema_root, labels="perceived").scan()
