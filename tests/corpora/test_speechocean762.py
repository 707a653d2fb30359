"""speechocean762 through the generic Kaldi loader and ``conf/data/speechocean762.yaml``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from deeptalk_ser.data.corpora.kaldi import KaldiCorpus
from deeptalk_ser.data.prepare import prepare_manifest

from .speaker_fixtures import SHARED_DATA, build_kaldi, instantiate_data_config


def test_config_on_fixture(tmp_path: Path) -> None:
    build_kaldi(tmp_path / "speechocean762")
    loader = instantiate_data_config("speechocean762", tmp_path)
    assert isinstance(loader, KaldiCorpus) and loader.subsets == ["train", "test"]
    utts = loader.scan()
    assert Counter(u.split for u in utts) == {"train": 3, "test": 3}
    assert Counter(u.speaker for u in utts) == {"14": 2, "0003": 1, "0007": 3}
    report = prepare_manifest(loader, tmp_path / "out")
    assert report.n_utterances == 6 and report.headers_read == 6


@pytest.mark.shared_data
def test_config_on_shared_copy(tmp_path: Path) -> None:
    if not (SHARED_DATA / "speechocean762").is_dir():
        pytest.skip(f"shared speechocean762 copy not found at {SHARED_DATA / 'speechocean762'}")
    loader = instantiate_data_config("speechocean762", SHARED_DATA)
    utts = loader.scan()
    per_split = {s: {u.speaker for u in utts if u.split == s} for s in ("train", "test")}
    assert Counter(u.split for u in utts) == {"train": 2000, "test": 2000}
    assert (len(per_split["train"]), len(per_split["test"])) == (125, 125)
    assert not per_split["train"] & per_split["test"]
    assert Counter(Counter(u.speaker for u in utts).values()) == {16: 250}


def test_id_in_two_data_dirs_names_both_wav_scp_files(tmp_path: Path) -> None:
    from deeptalk_ser.utils.errors import DataError

    root = build_kaldi(tmp_path / "so")
    test_scp = root / "test" / "wav.scp"
    first_train = (root / "train" / "wav.scp").read_text().splitlines()[0]
    test_scp.write_text(test_scp.read_text() + first_train + "\n")
    utt = first_train.split()[0]
    (root / "test" / "utt2spk").write_text((root / "test" / "utt2spk").read_text() + f"{utt} 0007\n")
    with pytest.raises(DataError, match="also listed in") as ei:
        KaldiCorpus(root).scan()
    assert ei.value.path == str(root / "test" / "wav.scp") and str(root / "train" / "wav.scp") in str(ei.value)


def test_speaker_in_both_data_dirs_is_reported(tmp_path: Path, caplog) -> None:
    root = build_kaldi(tmp_path / "so")
    train_speakers = {line.split()[1] for line in (root / "train" / "utt2spk").read_text().splitlines()}
    u2s = root / "test" / "utt2spk"
    lines = u2s.read_text().splitlines()
    first_utt = lines[0].split()[0]
    spk = sorted(train_speakers)[0]
    u2s.write_text("\n".join([f"{first_utt} {spk}"] + lines[1:]) + "\n")
    with caplog.at_level("WARNING", logger="deeptalk_ser.data.corpora.kaldi"):
        KaldiCorpus(root).scan()
    assert "more than one of ['train', 'test']" in caplog.text and spk in caplog.text
