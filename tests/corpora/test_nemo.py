"""nEMO loader on a fixture tree in the corpus's own layout (``samples/*.wav`` + ``data.tsv``:
tab-separated UTF-8 Polish text, speaker ids padded with leading spaces as in the release),
plus the acceptance check on the real copy in ``../shared/data/nemo``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from markers import requires_shared, shared
from deeptalk_ser.data.corpora.nemo import NEMO_EMOTIONS, NemoCorpus
from deeptalk_ser.data.manifest import read_manifest
from deeptalk_ser.data.prepare import prepare_manifest
from deeptalk_ser.evaluation.emotion_shift import emotion_shift
from deeptalk_ser.utils.errors import DataError

PAD = " " * 8  # the release pads speaker_id to 11 characters with leading spaces
HEADER = "file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage\n"
#: (file_id, emotion, raw_text, normalized_text, speaker, gender, age), as data.tsv rows (unsorted, like the release)
ROWS = (
    ("EB0_neutral_13.wav", "neutral", "Interesuje mnie historia Polski.", "interesuje mnie historia polski", "EB0", "female", "27"),
    ("EB0_anger_3.wav", "anger", "Chodźmy w tango.", "chodźmy w tango", "EB0", "female", "27"),
    ("KS0_happiness_3.wav", "happiness", "Chodźmy w tango.", "chodźmy w tango", "KS0", "male", "23"),
    ("EB0_neutral_3.wav", "neutral", "Chodźmy w tango.", "chodźmy w tango", "EB0", "female", "27"),
    ("KS0_sadness_19.wav", "sadness", "W wolnym czasie lubię czytać książki.", "w wolnym czasie lubię czytać książki", "KS0", "male", "23"),
    ("KS0_fear_3.wav", "fear", "Chodźmy w tango.", "chodźmy w tango", "KS0", "male", "23"),
    ("EB0_surprised_13.wav", "surprised", "Interesuje mnie historia Polski.", "interesuje mnie historia polski", "EB0", "female", "27"),
    ("KS0_neutral_19.wav", "neutral", "W wolnym czasie lubię czytać książki.", "w wolnym czasie lubię czytać książki", "KS0", "male", "23"),
)


def tsv_line(row: tuple[str, ...]) -> str:
    name, emo, raw, norm, spk, gender, age = row
    return "\t".join((name, emo, raw, norm, PAD + spk, gender, age)) + "\n"


TSV = HEADER + "".join(tsv_line(r) for r in ROWS)


def build_nemo(root: Path, write_wav, write_file) -> Path:
    for k, row in enumerate(ROWS):
        write_wav(root / "samples" / row[0], seconds=0.1 + 0.05 * k)
    write_file(root / "data.tsv", TSV)
    return root


@pytest.fixture
def nemo_root(tmp_path: Path, write_wav, write_file) -> Path:
    return build_nemo(tmp_path / "nemo", write_wav, write_file)


def _replace_line(root: Path, line: int, text: str) -> None:
    lines = (root / "data.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    lines[line - 1] = text
    (root / "data.tsv").write_text("".join(lines), encoding="utf-8")


def test_rows_speakers_labels_and_extras(nemo_root: Path) -> None:
    utts = {u.id: u for u in NemoCorpus(nemo_root).scan()}
    assert sorted(utts) == sorted(r[0][:-4] for r in ROWS)
    assert {u.speaker for u in utts.values()} == {"EB0", "KS0"}  # padding stripped
    assert {u: x.label for u, x in utts.items()} == {
        "EB0_neutral_13": "neutral", "EB0_anger_3": "angry", "KS0_happiness_3": "happy", "EB0_neutral_3": "neutral",
        "KS0_sadness_19": "sad", "KS0_fear_3": "fear", "EB0_surprised_13": "surprise", "KS0_neutral_19": "neutral"}
    a = utts["EB0_anger_3"]
    assert a.path == "samples/EB0_anger_3.wav" and a.split is None and a.corpus == "nemo"
    assert a.extra == {"label_raw": "anger", "text": "Chodźmy w tango.", "normalized_text": "chodźmy w tango",
                       "sentence": "3", "gender": "f", "age": 27}
    assert utts["KS0_sadness_19"].extra["text"] == "W wolnym czasie lubię czytać książki."
    assert {u.speaker: u.extra["gender"] for u in utts.values()} == {"EB0": "f", "KS0": "m"}


def test_all_six_emotions_have_canonical_names() -> None:
    assert sorted(NEMO_EMOTIONS) == ["anger", "fear", "happiness", "neutral", "sadness", "surprised"]
    assert sorted(NEMO_EMOTIONS.values()) == ["angry", "fear", "happy", "neutral", "sad", "surprise"]


def test_emotion_shift_pairs_the_same_sentence(nemo_root: Path) -> None:
    """The ``text`` extra pairs one speaker's same sentence across emotions, as EmoDB's text id."""
    utts = NemoCorpus(nemo_root).scan()
    emb = np.random.default_rng(0).normal(size=(len(utts), 8))
    res = emotion_shift(utts, emb, ["neutral", "angry", "happy", "sad"], text_key="text")
    n = {k: v["n"] for k, v in res["emotion_pairs"].items() if v["n"]}
    assert n == {"neutral-angry": 1, "neutral-sad": 1}  # EB0 sentence 3, KS0 sentence 19
    by_id = emotion_shift(utts, emb, ["neutral", "angry", "happy", "sad"], text_key="sentence")
    assert {k: v["n"] for k, v in by_id["emotion_pairs"].items() if v["n"]} == n


def test_crlf_bom_and_blank_lines_are_tolerated(nemo_root: Path) -> None:
    (nemo_root / "data.tsv").write_bytes(("\ufeff" + TSV + "\n").replace("\n", "\r\n").encode("utf-8"))
    utts = NemoCorpus(nemo_root).scan()
    assert len(utts) == len(ROWS) and {u.speaker for u in utts} == {"EB0", "KS0"}


def test_quote_in_text_is_text(nemo_root: Path) -> None:
    row = ("EB0_anger_3.wav", "anger", '"Chodźmy" w tango.', "chodźmy w tango", "EB0", "female", "27")
    _replace_line(nemo_root, 3, tsv_line(row))
    utts = {u.id: u for u in NemoCorpus(nemo_root).scan()}
    assert utts["EB0_anger_3"].extra["text"] == '"Chodźmy" w tango.'


@pytest.mark.parametrize("line, text, message", [
    (3, "EB0_anger_3.wav\tanger\tChodźmy w tango.\n", r"data\.tsv:3: expected 7 tab-separated fields"),
    (3, tsv_line(("EB0_anger_3.wav", "rage", "x", "x", "EB0", "female", "27")),
     r"data\.tsv:3: unknown nEMO emotion 'rage' \(known: anger fear happiness neutral sadness surprised\)"),
    (3, tsv_line(("EB0_anger_3.wav", "neutral", "x", "x", "EB0", "female", "27")),
     r"data\.tsv:3: file_id EB0_anger_3\.wav disagrees with the row"),
    (3, tsv_line(("EB0-anger-3.wav", "anger", "x", "x", "EB0", "female", "27")),
     r"data\.tsv:3: file_id 'EB0-anger-3\.wav' does not follow <speaker>_<emotion>_<sentence>\.wav"),
    (3, tsv_line(("EB0_anger_3.wav", "anger", "x", "x", "EB0", "feminine", "27")),
     r"data\.tsv:3: unknown gender value 'feminine'"),
    (3, tsv_line(("EB0_anger_3.wav", "anger", "x", "x", "EB0", "female", "old")),
     r"data\.tsv:3: column 'age': expected a number"),
    (3, tsv_line(ROWS[0]), r"data\.tsv:3: EB0_neutral_13\.wav is listed twice \(first on line 2\)"),
])
def test_bad_row_names_file_and_line(nemo_root: Path, line: int, text: str, message: str) -> None:
    _replace_line(nemo_root, line, text)
    with pytest.raises(DataError, match=message):
        NemoCorpus(nemo_root).scan()


def test_missing_wav_names_it_and_the_line(nemo_root: Path) -> None:
    (nemo_root / "samples" / "KS0_fear_3.wav").unlink()
    with pytest.raises(DataError, match=r"data\.tsv:7: samples/KS0_fear_3\.wav listed here is missing"):
        NemoCorpus(nemo_root).scan()


def test_skip_leaves_bad_rows_out_and_reports_them(nemo_root: Path) -> None:
    (nemo_root / "samples" / "KS0_fear_3.wav").unlink()
    _replace_line(nemo_root, 3, tsv_line(("EB0_anger_3.wav", "rage", "x", "x", "EB0", "female", "27")))
    loader = NemoCorpus(nemo_root)
    loader.on_error = "skip"
    utts = loader.scan()
    assert len(utts) == len(ROWS) - 2 and {u.id for u in utts}.isdisjoint({"EB0_anger_3", "KS0_fear_3"})
    assert [(r["id"], r["reason"]) for r in loader.rejected] == [
        ("line 3", "unknown nEMO emotion 'rage' (known: anger fear happiness neutral sadness surprised) (line 3)"),
        ("line 7", "samples/KS0_fear_3.wav listed here is missing (line 7)")]
    assert all(r["path"].endswith("data.tsv") for r in loader.rejected)


def test_prepare_with_on_error_skip_reports_the_row(nemo_root: Path, tmp_path: Path) -> None:
    _replace_line(nemo_root, 4, "KS0_happiness_3.wav\thappiness\n")
    report = prepare_manifest(NemoCorpus(nemo_root), tmp_path / "out", on_error="skip")
    assert report.n_utterances == len(ROWS) - 1
    utts = read_manifest(report.manifest)
    assert "KS0_happiness_3" not in {u.id for u in utts}
    assert {u.sample_rate for u in utts} == {16000} and all(Path(u.path).is_file() for u in utts)


@pytest.mark.parametrize("header", ["file_id\temotion\traw_text\n", "file_id,emotion,raw_text,normalized_text,speaker_id,gender,age\n", ""])
def test_bad_header_always_stops(nemo_root: Path, header: str) -> None:
    (nemo_root / "data.tsv").write_text(header, encoding="utf-8")
    loader = NemoCorpus(nemo_root)
    loader.on_error = "skip"
    with pytest.raises(DataError, match=r"data\.tsv:1: (header must be|file is empty)"):
        loader.scan()


def test_non_utf8_file_is_named(nemo_root: Path) -> None:
    (nemo_root / "data.tsv").write_bytes(TSV.encode("cp1250"))
    with pytest.raises(DataError, match=r"data\.tsv: not UTF-8 text"):
        NemoCorpus(nemo_root).scan()


def test_missing_layout_parts_are_named(nemo_root: Path) -> None:
    (nemo_root / "data.tsv").unlink()
    with pytest.raises(DataError, match=r"data\.tsv: expected by the nemo layout but missing"):
        NemoCorpus(nemo_root).scan()


def test_unlisted_wav_is_ignored_with_a_warning(nemo_root: Path, write_wav, caplog) -> None:
    write_wav(nemo_root / "samples" / "EB0_anger_99.wav")
    (nemo_root / "samples" / "._EB0_anger_3.wav").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    with caplog.at_level("WARNING"):
        utts = NemoCorpus(nemo_root).scan()
    assert len(utts) == len(ROWS)
    assert "1 wav file(s) not listed in data.tsv are ignored (e.g. EB0_anger_99.wav)" in caplog.text


def test_options_fingerprint_the_label_file(nemo_root: Path) -> None:
    before = NemoCorpus(nemo_root).options()
    (nemo_root / "data.tsv").write_text(TSV.replace("\t27\n", "\t28\n"), encoding="utf-8")
    assert NemoCorpus(nemo_root).options() != before


@pytest.mark.shared_data
@requires_shared("nemo")
def test_shared_nemo_copy_reads_with_the_readme_counts() -> None:
    """../shared/data/nemo/README.md: 668 files, 9 speakers (4 f, 5 m), four emotions, 167 each."""
    utts = NemoCorpus(shared("nemo")).scan()
    assert len(utts) == 668
    assert Counter(u.label for u in utts) == {"angry": 167, "happy": 167, "sad": 167, "neutral": 167}
    genders = {u.speaker: u.extra["gender"] for u in utts}
    assert len(genders) == 9 and Counter(genders.values()) == {"f": 4, "m": 5}
    assert all(u.speaker == u.speaker.strip() and u.extra["text"] for u in utts)
    per_speaker = Counter(u.speaker for u in utts)
    assert per_speaker["MP0"] == 28 and all(n == 80 for s, n in per_speaker.items() if s != "MP0")
    # same sentence id -> same text, so the transcript is a stable emotion_shift key
    assert len({(u.extra["sentence"], u.extra["text"]) for u in utts}) == len({u.extra["sentence"] for u in utts})
