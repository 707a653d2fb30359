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
