"""Paired speaker-level comparisons (evaluation/comparison.py) on constructed runs: the statistic
is the UA difference, a real difference is found, a null one is rejected at no more than the
nominal rate, runs that are not a pair are refused with the reason, Holm is Holm."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from deeptalk_ser.evaluation.comparison import (ScoredRun, compare_to_best, holm, paired_ua_test, read_scored_run,
                                                why_not_paired)
from deeptalk_ser.utils.errors import DataError

CLASSES = ("angry", "happy", "neutral", "sad")


def design(n_speakers: int = 10, per_class: int = 6, seed: int = 0) -> list[tuple[str, str, str, str]]:
    """(id, speaker, fold, true): leave-one-speaker-out, every speaker with every class, uneven."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_speakers):
        for c in CLASSES:
            for k in range(per_class + int(rng.integers(0, 3))):
                rows.append((f"s{s:02d}_{c}_{k}", f"s{s:02d}", f"s{s:02d}", c))
    return rows


def predict(rows, accuracy: float, rng: np.random.Generator) -> list[str]:
    """Right with probability ``accuracy``, else a random other class."""
    out = []
    for *_, true in rows:
        if rng.random() < accuracy:
            out.append(true)
        else:
            out.append(str(rng.choice([c for c in CLASSES if c != true])))
    return out


def write_run(folder: Path, rows, pred) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "predictions.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "speaker", "fold", "true", "pred"])
        w.writerows([(*r, p) for r, p in zip(rows, pred)])
    return folder


def make_run(name: str, rows, pred) -> ScoredRun:
    arr = np.array([(*r, p) for r, p in zip(rows, pred)], dtype=str)
    order = np.argsort(arr[:, 0], kind="stable")
    arr = arr[order]
    return ScoredRun(name, Path(name), *(arr[:, i] for i in range(5)))


def test_statistic_is_the_ua_difference_and_contributions_sum_to_ua(tmp_path: Path) -> None:
    rows = design()
    rng = np.random.default_rng(1)
    a = read_scored_run(write_run(tmp_path / "a", rows, predict(rows, 0.8, rng)))
    b = read_scored_run(write_run(tmp_path / "b", rows, predict(rows, 0.5, rng)))
    assert a.name == "a" and a.ua == pytest.approx(balanced_accuracy_score(a.true, a.pred))
    test = paired_ua_test(a, b)
    assert test.diff == pytest.approx(balanced_accuracy_score(a.true, a.pred) - balanced_accuracy_score(b.true, b.pred))
    assert test.n_speakers == 10 and test.exact and test.n_permutations == 2 ** 10


def test_a_known_difference_is_detected() -> None:
    rows = design()
    rng = np.random.default_rng(2)
    good, poor = make_run("good", rows, predict(rows, 0.85, rng)), make_run("poor", rows, predict(rows, 0.55, rng))
    test = paired_ua_test(good, poor)
    assert test.diff > 0.2 and test.p_value <= 2 / 2 ** 10 + 1e-12  # every speaker favours `good`: the smallest p


def test_a_null_difference_is_rejected_at_no_more_than_the_nominal_rate() -> None:
    """Two runs of equal accuracy with independent errors, over 300 seeds: the 5 % test rejects
    about 5 % of the time (exact permutation: at most alpha, up to binomial noise)."""
    rows = design(n_speakers=10, per_class=5)
    rejections = []
    for seed in range(300):
        rng = np.random.default_rng(1000 + seed)
        a, b = make_run("a", rows, predict(rows, 0.7, rng)), make_run("b", rows, predict(rows, 0.7, rng))
        rejections.append(paired_ua_test(a, b).p_value < 0.05)
    rate = float(np.mean(rejections))
    assert 0.01 <= rate <= 0.09, rate  # 0.05 +- 2.3 binomial sd of 300 draws; 0 would mean a test that never rejects


def test_more_speakers_than_exact_enumeration_use_seeded_resamples() -> None:
    rows = design(n_speakers=16, per_class=2)
    rng = np.random.default_rng(3)
    a, b = make_run("a", rows, predict(rows, 0.7, rng)), make_run("b", rows, predict(rows, 0.6, rng))
    t1, t2 = paired_ua_test(a, b, n_resamples=999, seed=5), paired_ua_test(a, b, n_resamples=999, seed=5)
    assert not t1.exact and t1.n_permutations == 999 and t1.p_value == t2.p_value


@pytest.mark.parametrize("change, needle", [
    ("drop", "different utterances (0 only in a, 1 only in b"),
    ("fold", "another fold"),
    ("true", "another true label"),
])
def test_runs_that_are_not_a_pair_are_refused_with_the_reason(change: str, needle: str) -> None:
    rows = design(n_speakers=3, per_class=2)
    pred = [r[3] for r in rows]
    other = list(rows)
    if change == "drop":  # a lacks b's first utterance
        other, pred_a = other[1:], pred[1:]
    else:
        pred_a = pred
        i = 3 if change == "true" else 2
        other[0] = tuple("elsewhere" if change == "fold" and j == i else
                         ("sad" if v != "sad" else "angry") if j == i else v for j, v in enumerate(other[0]))
    a, b = make_run("a", other, pred_a), make_run("b", rows, pred)
    assert needle in why_not_paired(a, b)
    with pytest.raises(DataError, match="cannot be compared"):
        paired_ua_test(a, b)


def test_bad_predictions_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="predictions.csv: missing"):
        read_scored_run(tmp_path)
    (tmp_path / "predictions.csv").write_text("id,speaker,true\nx,s,angry\n")
    with pytest.raises(DataError, match="lacks the column"):
        read_scored_run(tmp_path)
    (tmp_path / "predictions.csv").write_text("id,speaker,fold,true,pred\nx,s,f,angry,sad\nx,s,f,sad,sad\n")
    with pytest.raises(DataError, match=r"predictions.csv:3: utterance id 'x' appears more than once"):
        read_scored_run(tmp_path)


def test_holm_matches_the_textbook_example() -> None:
    # p sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, 0.9]) == pytest.approx([0.4, 0.9]) and holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])


def test_compare_to_best_groups_by_design_and_marks_each_run() -> None:
    rows = design()
    rng = np.random.default_rng(4)
    runs = [make_run("svm", rows, predict(rows, 0.85, rng)), make_run("knn", rows, predict(rows, 0.45, rng)),
            make_run("mlp", rows, predict(rows, 0.84, rng)),
            make_run("other_corpus", design(n_speakers=4, seed=9), predict(design(n_speakers=4, seed=9), 0.5, rng))]
    res = compare_to_best(runs)
    best = max(runs[:3], key=lambda r: r.ua).name
    assert res[best].mark == "best" and res[best].p_vs_best is None
    assert res["knn"].mark == "worse" and res["knn"].best == best and res["knn"].p_vs_best < 0.05
    assert res["knn"].p_vs_best >= res["knn"].p_raw and res["knn"].diff < -0.2
    assert res["other_corpus"].mark == "alone" and res["other_corpus"].best is None
    close = "mlp" if best == "svm" else "svm"
    assert res[close].mark == "indistinguishable" and res[close].p_vs_best >= 0.05
