"""What a user sees when the input or the config is wrong: one line naming the file or the config
key, no traceback (unless HYDRA_FULL_ERROR=1), and nothing expensive started before the check."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e_utils import read_json, run_script, speech_emodb_tree

pytestmark = pytest.mark.e2e
USER = {"HYDRA_FULL_ERROR": "0"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_emodb_tree(tmp_path_factory.mktemp("corpus") / "emodb", speakers=("03", "08", "09"),
                             texts=("a01", "a02"), seconds=0.8)


def _one_line_error(proc, *needles: str) -> str:
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = next(ln for ln in proc.stderr.splitlines() if ": error: " in ln)
    for n in needles:
        assert n in line, line
    return line


@pytest.mark.parametrize("override,key", [  # a bad classifier value and a bad protocol; gamma=abc as the C check (slow)
    ("classifier.C=-1", "classifier.C"), pytest.param("classifier.gamma=abc", "classifier.gamma", marks=pytest.mark.slow),
    ("protocol=group_kfold", "protocol.k")])
def test_bad_classifier_or_protocol_refused_before_extraction(corpus, tmp_path, override, key):
    proc = run_script("evaluate.py", "encoder=egemaps", f"data.root={corpus}", "logger=none", override, tmp=tmp_path,
                      check=False, env=USER)
    _one_line_error(proc, "evaluate.py: error:", key)
    assert not (tmp_path / "cache" / "embeddings").exists()  # refused before any embedding was computed


@pytest.mark.slow  # covered in the default run by a missing root: tests/test_e2e_evaluate.py::test_missing_root_is_a_clear_error
def test_missing_root_is_one_line_and_full_error_keeps_the_traceback(tmp_path):
    args = ("evaluate.py", f"data.root={tmp_path / 'nowhere'}", "logger=none")
    line = _one_line_error(run_script(*args, tmp=tmp_path, check=False, env=USER), str(tmp_path / "nowhere"))
    assert "corpus root not found" in line
    full = run_script(*args, tmp=tmp_path, check=False)  # run_script's default: HYDRA_FULL_ERROR=1
    assert full.returncode != 0 and "Traceback" in full.stderr


@pytest.mark.slow  # covered in the default run by skips end to end: tests/test_e2e_evaluate.py::test_bad_audio_is_named_and_skippable
def test_prepare_skips_are_counted_in_extract_summary_and_final_line(corpus, tmp_path):
    import shutil

    root = tmp_path / "emodb"
    shutil.copytree(corpus, root)
    (root / "wav" / "03a01Wa.wav").write_bytes(b"RIFF\x00\x00garbage")
    for attempt in range(2):  # the second run reuses the manifest: the skip must still be reported
        run = tmp_path / f"run{attempt}"
        proc = run_script("extract.py", "encoder=egemaps", f"data.root={root}", "data.on_error=skip",
                          f"hydra.run.dir={run}", tmp=tmp_path)
        summary = read_json(run / "extract_summary.json")
        assert [s["id"] for s in summary["skipped_at_prepare"]] == ["03a01Wa"]
        assert summary["n_skipped_at_prepare"] == 1
        assert "1 skipped at prepare" in proc.stdout.strip().splitlines()[-1]
