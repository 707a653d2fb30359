"""Nested tuning: the grid search sees only the training fold, grouped by speaker."""

from __future__ import annotations

import numpy as np
import pytest

from deeptalk_ser.evaluation.classifiers.svm import SVMClassifier
from deeptalk_ser.evaluation.tuning import tuned_fit
from deeptalk_ser.utils.errors import ConfigError

SEEN: list[np.ndarray] = []


class SpySVM(SVMClassifier):
    """Records every row matrix it is fitted on (clones share the module-level list)."""

    def fit(self, X, y):
        SEEN.append(np.asarray(X).copy())
        return super().fit(X, y)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    spk = np.repeat([f"s{i}" for i in range(6)], 20).astype(object)
    y = np.tile(np.array(["angry", "sad"], dtype=object), 60)
    X = (rng.standard_normal((120, 5)) + np.where(y == "angry", 1.5, -1.5)[:, None] * [1, 0, 0, 0, 0] * 3).astype(np.float32)
    return X, y, spk


def test_search_never_sees_the_test_fold_and_groups_by_speaker():
    X, y, spk = _data()
    test = np.isin(spk, ["s5"])
    SEEN.clear()
    best, info = tuned_fit(lambda: SpySVM(backend="sklearn"), {"C": [1.0, 100.0], "gamma": ["scale", 0.01]},
                           X[~test], y[~test], spk[~test], inner_folds=3)
    test_rows = {r.tobytes() for r in X[test]}
    assert SEEN and all(not ({r.tobytes() for r in fitted} & test_rows) for fitted in SEEN)
    assert len(SEEN) == 4 * 3 + 1  # 4 grid points x 3 inner folds + the refit on the whole training fold
    assert info["inner_folds"] == 3 and len(info["grid_scores"]) == 4 and info["best_params"]["C"] in (1.0, 100.0)
    assert (best.predict(X[test]) == y[test]).mean() > 0.9


def test_bad_grid_names_the_key():
    X, y, spk = _data()
    with pytest.raises(ConfigError, match="tuning.grid"):
        tuned_fit(lambda: SVMClassifier(backend="sklearn"), {"degree": [2]}, X, y, spk)
    with pytest.raises(ConfigError, match="tuning.folds"):
        tuned_fit(lambda: SVMClassifier(backend="sklearn"), {"C": [1.0]}, X[:20], y[:20], spk[:20])


def test_a_stage_key_ties_every_stage_of_sad_first():
    """``C`` is not Sad-First's own parameter: it sets both stages to one value (the paper's one
    SVM setting); ``first_stage__C`` alone tunes one stage."""
    from deeptalk_ser.evaluation.classifiers.hierarchical import SadFirstClassifier, sad_first
    from deeptalk_ser.evaluation.tuning import check_grid

    two = SadFirstClassifier(first_stage=SVMClassifier(), second_stage=SVMClassifier())
    grid = check_grid({"C": [1.0, 10.0], "gamma": ["scale"]}, list(two.get_params(deep=True)))
    assert grid == [{"first_stage__C": [c], "second_stage__C": [c], "first_stage__gamma": ["scale"],
                     "second_stage__gamma": ["scale"]} for c in (1.0, 10.0)]
    assert check_grid({"first_stage__C": [1.0]}, list(two.get_params(deep=True))) == [{"first_stage__C": [1.0]}]
    X, y, spk = _data()
    y = np.where(np.arange(len(y)) % 3 == 0, "neutral", y).astype(object)
    best, info = tuned_fit(lambda: sad_first(backend="sklearn"), {"C": [1.0, 100.0]}, X, y, spk, inner_folds=2)
    assert set(info["best_params"]) == {"first_stage__C"} and len(info["grid_scores"]) == 2
    assert best.stage1_.C == best.stage2_.C == info["best_params"]["first_stage__C"]


@pytest.mark.e2e
def test_evaluate_with_tuning_enabled(tmp_path):
    from e2e_utils import read_json, run_script, speech_emodb_tree

    corpus = speech_emodb_tree(tmp_path / "emodb", speakers=("03", "08", "09"), texts=("a01", "a02"))
    run = tmp_path / "run"
    run_script("evaluate.py", "experiment=egemaps_baseline", f"data.root={corpus}", "logger=none", "tuning.enabled=true",
               "tuning.grid={C:[1.0,100.0],gamma:[scale]}", f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert res["tuning"]["grid"] == {"C": [1.0, 100.0], "gamma": ["scale"]}
    for fold in res["folds"]:  # 3 LOSO folds, 2 training speakers each -> 2 inner folds
        assert fold["tuned"]["inner_folds"] == 2 and fold["tuned"]["best_params"]["C"] in (1.0, 100.0)


def test_optuna_sweeper_config_composes():
    """``hydra/sweeper=svm_optuna`` composes with evaluate.yaml: Hydra's Optuna sweeper, seeded TPE,
    maximising over the classifier keys that exist in both heads."""
    from hydra import compose, initialize_config_dir
    from markers import PROJECT_ROOT

    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=["hydra/sweeper=svm_optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert sweeper.direction == "maximize" and sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert set(sweeper.params) == {"classifier.C", "classifier.gamma"}
    for key in sweeper.params:  # every searched key exists in both classifier configs
        for head in ("svm", "hierarchical"):
            with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
                assert compose(config_name="evaluate", overrides=[f"classifier={head}", f"{key}=1.0"])


@pytest.mark.slow  # covered in the default run by nested tuning end to end: test_evaluate_with_tuning_enabled
@pytest.mark.e2e
def test_optuna_sweep_runs_trials_and_writes_one_summary(tmp_path):
    from e2e_utils import run_script, speech_emodb_tree

    corpus = speech_emodb_tree(tmp_path / "emodb", speakers=("03", "08", "09"), texts=("a01", "a02"))
    sweep = tmp_path / "sweep"
    run_script("evaluate.py", "-m", "hydra/sweeper=svm_optuna", "hydra.sweeper.n_trials=2", "experiment=egemaps_baseline",
               f"data.root={corpus}", "logger=none", f"hydra.sweep.dir={sweep}", tmp=tmp_path)
    assert sorted(p.parent.name for p in sweep.glob("*/results.json")) == ["0", "1"]
    assert "best_value" in (sweep / "optimization_results.yaml").read_text()
    assert (sweep / "summary.csv").read_text().count("\n") == 3  # header + 2 trials
