"""Acceptance on real speech from ../shared/data (skipped with a reason when it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e_utils import read_json, run_script
from markers import requires_shared, shared

pytestmark = [pytest.mark.e2e, pytest.mark.shared_data]


@requires_shared("deeptalkemotions_crema_d")
def test_paper_flat_svm_on_the_authors_crema_d_arrays(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_script("evaluate.py", "data=deeptalkemotions_crema_d", "classifier=svm", f"paths.data_dir={shared('')}",
               "logger=none", f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert res["n_utterances"] == 2880 + 1280 and res["speaker_independent"] is False
    assert abs(res["wa"] - 0.648) <= 0.005  # the paper's code: SVC(rbf, C=1000, gamma=0.1), 0.648


@requires_shared("deeptalkemotions_crema_d")
def test_sad_first_scored_end_to_end_is_not_the_papers_0754(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_script("evaluate.py", "data=deeptalkemotions_crema_d", "classifier=hierarchical", f"paths.data_dir={shared('')}",
               "logger=none", f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert 0.60 <= res["wa"] <= 0.66  # docs/deeptalk.md section 5: a true 4-class score of about 62-64 %
    assert sum(map(sum, res["confusion"])) == 1280


@requires_shared("emodb")
def test_emodb_ge2e_loso_meets_the_acceptance_ua(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_script("evaluate.py", "data=emodb", "encoder=ge2e", "classifier=svm", "task=er", "protocol=loso",
               f"paths.data_dir={shared('')}", "logger=none", f"hydra.run.dir={run}", tmp=tmp_path, timeout=600)
    res = read_json(run / "results.json")
    assert res["n_utterances"] == 339 and res["n_folds"] == 10 and res["n_speakers"] == 10
    assert res["ua"] >= 0.85
    assert all(f["speakers_shared"] == 0 for f in res["folds"])


@pytest.mark.slow  # 45 s: `make test-all`
@requires_shared("speechocean762")
def test_shipped_deeptalk_checkpoint_reproduces_its_model_card_eer(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_script("evaluate.py", "task=verification", "data=speechocean762", "encoder=deeptalk",
               "encoder.windowing.window_s=null", f"paths.data_dir={shared('')}", "logger=none",
               f"hydra.run.dir={run}", tmp=tmp_path, timeout=600)
    res = read_json(run / "results.json")
    assert res["n_speakers"] == 125 and res["n_trials"] == 19200
    assert abs(res["eer"] - 0.0939) <= 0.005  # docs/results.md verification table (deeptalk_speechocean762.pt)
    assert res["eer"] < 0.45  # random init gives 0.495 on these trials
