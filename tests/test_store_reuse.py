"""One embedding store per corpus, encoder and windowing: ``extract.py`` fills it and every task
selects its rows by id; a task that asks for ids the store lacks embeds only those, and each
job's ``extract_summary.json`` says what it reused and what it embedded."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e_utils import read_json, run_script, speech_emodb_tree

pytestmark = pytest.mark.e2e

N_FILES = 3 * 2 * 5  # speakers x texts x emotions (W T F N L)
N_TASK = 3 * 2 * 4   # ER and ED use angry, sad, happy, neutral: boredom (L) is left out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_emodb_tree(tmp_path_factory.mktemp("corpus") / "emodb", speakers=("03", "08", "09"),
                             texts=("a01", "a02"))


def _stores(tmp: Path) -> list[str]:
    root = tmp / "cache" / "embeddings" / "emodb"
    assert not list(root.glob(".*.work")), "no work folder is left behind"
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


def test_extract_then_er_then_ed_use_one_store_and_extract_nothing_again(corpus: Path, tmp_path: Path) -> None:
    """The acceptance of issue 25 item 1: extract.py encoder=egemaps, then evaluate.py
    experiment=egemaps_baseline task=er and task=ed: one store in the cache, the evaluations embed nothing."""
    run_script("extract.py", "encoder=egemaps", f"data.root={corpus}", f"hydra.run.dir={tmp_path / 'extract'}",
               tmp=tmp_path)
    first = read_json(tmp_path / "extract" / "extract_summary.json")
    assert (first["n_embedded"], first["n_reused"], first["embedded"]) == (N_FILES, 0, N_FILES)
    assert "reused_store" not in first and first["store_rows"] == N_FILES
    for task in ("er", "ed"):
        run = tmp_path / task
        run_script("evaluate.py", "experiment=egemaps_baseline", f"task={task}", f"data.root={corpus}", "logger=none",
                   f"hydra.run.dir={run}", tmp=tmp_path)
        summary = read_json(run / "extract_summary.json")
        assert (summary["n_embedded"], summary["n_reused"]) == (0, N_TASK), task
        assert summary["reused_store"] == first["store"] and summary["utterances_in"] == N_TASK
        assert read_json(run / "results.json")["extraction"]["n_embedded"] == 0
    assert _stores(tmp_path) == [Path(first["store"]).name]


@pytest.mark.slow  # covered in the default run by store reuse end to end: the other test of this file
def test_a_task_first_then_extract_py_embeds_only_what_the_task_left_out(corpus: Path, tmp_path: Path) -> None:
    run_script("evaluate.py", "experiment=egemaps_baseline", "task=er", f"data.root={corpus}", "logger=none",
               f"hydra.run.dir={tmp_path / 'er'}", tmp=tmp_path)
    er = read_json(tmp_path / "er" / "extract_summary.json")
    assert (er["n_embedded"], er["n_reused"], er["store_rows"]) == (N_TASK, 0, N_TASK)
    proc = run_script("extract.py", "encoder=egemaps", f"data.root={corpus}", f"hydra.run.dir={tmp_path / 'extract'}",
                      tmp=tmp_path)
    summary = read_json(tmp_path / "extract" / "extract_summary.json")
    assert (summary["n_embedded"], summary["n_reused"]) == (N_FILES - N_TASK, N_TASK)  # the boredom files only
    assert summary["store"] == er["store"] and summary["store_rows"] == N_FILES
    assert f"{N_TASK} reused from the store, {N_FILES - N_TASK} extracted now" in proc.stdout
    assert _stores(tmp_path) == [Path(er["store"]).name]
