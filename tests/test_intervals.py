"""Speaker-level bootstrap intervals (evaluation/intervals.py) on constructed cases, and end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deeptalk_ser.evaluation.intervals import eer_bootstrap, speaker_bootstrap, weighted_eer
from deeptalk_ser.evaluation.metrics import classification_metrics
from deeptalk_ser.evaluation.verification import compute_eer
from deeptalk_ser.utils.reporting import summary_row

CLASSES = ["angry", "happy", "neutral", "sad"]


def noisy_predictions(n_speakers: int, per_speaker: int = 24, accuracy: float = 0.7, seed: int = 0):
    """Each speaker has every class equally often; speakers' own accuracies cycle through
    ``accuracy`` -0.3 .. +0.3 (speakers differ, as they do, by the same spread whatever their
    number), wrong predictions are another class."""
    rng = np.random.default_rng(seed)
    y_true, y_pred, spk = [], [], []
    for s in range(n_speakers):
        acc = accuracy + (-0.3, -0.15, 0.0, 0.15, 0.3)[s % 5]
        t = np.array(CLASSES * (per_speaker // len(CLASSES)), dtype=object)
        right = rng.random(len(t)) < acc
        shift = rng.integers(1, len(CLASSES), len(t))
        wrong = np.array([CLASSES[(CLASSES.index(c) + k) % len(CLASSES)] for c, k in zip(t, shift)], dtype=object)
        y_true.append(t)
        y_pred.append(np.where(right, t, wrong))
        spk += [f"s{s:03d}"] * len(t)
    return np.concatenate(y_true), np.concatenate(y_pred), np.array(spk, dtype=object)


def width(iv) -> float:
    return iv[1] - iv[0]


def test_interval_contains_the_point_estimate_and_is_seeded() -> None:
    y_true, y_pred, spk = noisy_predictions(10)
    point = classification_metrics(y_true, y_pred, CLASSES)
    ci = speaker_bootstrap(y_true, y_pred, spk, CLASSES, n_resamples=1000, seed=3)
    assert set(ci) == {"wa", "ua", "macro_f1"}
    for name, (lo, hi) in ci.items():
        assert lo <= point[name] <= hi, (name, lo, point[name], hi)
        assert hi - lo > 0.01  # speakers differ: the interval is not a point
    assert speaker_bootstrap(y_true, y_pred, spk, CLASSES, n_resamples=1000, seed=3) == ci
    assert speaker_bootstrap(y_true, y_pred, spk, CLASSES, n_resamples=1000, seed=4) != ci
    # speaker names' order does not change the draws (speakers are numbered in first-seen order)
    renamed = np.array([f"z{999 - int(s[1:])}" for s in spk], dtype=object)
    assert speaker_bootstrap(y_true, y_pred, renamed, CLASSES, n_resamples=1000, seed=3) == ci


def test_width_shrinks_with_more_speakers() -> None:
    widths = []
    for n in (5, 20, 80):
        y_true, y_pred, spk = noisy_predictions(n, seed=1)
        widths.append(width(speaker_bootstrap(y_true, y_pred, spk, CLASSES, 1000, seed=0)["ua"]))
    assert widths[0] > widths[1] > widths[2], widths
    assert widths[0] > 2 * widths[2]  # about 1/sqrt(n): 4x fewer speakers, 2x wider


def test_perfect_classifier_gives_a_point() -> None:
    y_true, _, spk = noisy_predictions(6)
    ci = speaker_bootstrap(y_true, y_true, spk, CLASSES, 500, seed=0)
    assert ci == {"wa": [1.0, 1.0], "ua": [1.0, 1.0], "macro_f1": [1.0, 1.0]}


def test_resamples_speakers_not_utterances() -> None:
    """Every fifth speaker all wrong, the others all right: WA 0.8 over the same 200 utterances
    either way. Resampling utterances would give the same interval for 5 and for 50 speakers;
    resampling speakers gives one as wide as the chance of drawing the bad speakers more or less
    often allows: wide with 5 speakers (WA moves in steps of 0.2), about 3x narrower with 50."""
    def case(n_speakers: int, n_utts: int = 200):
        per = n_utts // n_speakers
        t = np.resize(np.array(CLASSES, dtype=object), per * n_speakers)
        spk = np.repeat([f"s{i}" for i in range(n_speakers)], per).astype(object)
        pred = t.copy()
        bad = np.repeat(np.arange(n_speakers) % 5 == 0, per)
        pred[bad] = np.array([CLASSES[(CLASSES.index(c) + 1) % 4] for c in t[bad]], dtype=object)
        return t, pred, spk

    t5, p5, s5 = case(5)
    ci5 = speaker_bootstrap(t5, p5, s5, CLASSES, 2000, seed=0)["wa"]
    assert ci5[0] <= 0.6 and ci5[1] == 1.0, ci5
    t50, p50, s50 = case(50)
    assert classification_metrics(t50, p50, CLASSES)["wa"] == classification_metrics(t5, p5, CLASSES)["wa"] == 0.8
    ci50 = speaker_bootstrap(t50, p50, s50, CLASSES, 2000, seed=0)["wa"]
    assert ci50[0] <= 0.8 <= ci50[1]
    assert width(ci50) < width(ci5) / 2, (ci5, ci50)
    # errors spread evenly over the speakers: no speaker-level variance, a point
    p = t5.copy()
    p[::5] = np.array([CLASSES[(CLASSES.index(c) + 1) % 4] for c in t5[::5]], dtype=object)
    even = speaker_bootstrap(t5, p, s5, CLASSES, 500, seed=0)["wa"]
    assert width(even) < 1e-9 and abs(even[0] - 0.8) < 1e-9, even


def test_ua_on_a_resample_missing_a_class_averages_the_classes_present() -> None:
    # speaker a has only angry (all right), speaker b only sad (all wrong): a resample of a, a has UA 1
    y_true = np.array(["angry"] * 4 + ["sad"] * 4, dtype=object)
    y_pred = np.array(["angry"] * 4 + ["happy"] * 4, dtype=object)
    spk = np.array(["a"] * 4 + ["b"] * 4, dtype=object)
    ci = speaker_bootstrap(y_true, y_pred, spk, CLASSES, 400, seed=0)
    assert ci["ua"] == [0.0, 1.0] and ci["wa"] == [0.0, 1.0]


def test_no_interval_without_two_speakers(caplog: pytest.LogCaptureFixture) -> None:
    # data without speaker ids (the authors' CREMA-D arrays) is one cluster: no speaker interval
    y_true, y_pred, _ = noisy_predictions(3)
    one = np.array(["unknown"] * len(y_true), dtype=object)
    with caplog.at_level("WARNING"):
        assert speaker_bootstrap(y_true, y_pred, one, CLASSES, 200, seed=0) == {}
    assert "at least 2" in caplog.text
    assert eer_bootstrap(np.arange(6.0), np.array([1, 0] * 3), ["x"] * 6, 200) == {}
    assert speaker_bootstrap(y_true, y_pred, one, CLASSES, 0, seed=0) == {}


def test_weighted_eer_matches_compute_eer_with_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(3000) < 0.2
    scores = np.round(rng.normal(size=3000) + 1.5 * labels, 1)  # many ties
    uniq, inv = np.unique(scores, return_inverse=True)
    tar = np.bincount(inv, weights=labels, minlength=len(uniq))[None]
    non = np.bincount(inv, weights=~labels, minlength=len(uniq))[None]
    assert weighted_eer(tar, non)[0] == pytest.approx(compute_eer(scores, labels.astype(int))[0], abs=1e-12)


def test_eer_interval_contains_the_eer_and_shrinks_with_speakers() -> None:
    def trials(n_speakers: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        spk = np.repeat(np.arange(n_speakers), 60)
        shift = rng.normal(2.0, 0.7, n_speakers)[spk]  # some speakers are easier to verify
        labels = rng.random(len(spk)) < 0.25
        scores = rng.normal(size=len(spk)) + shift * labels
        return scores, labels, spk

    widths = []
    for n in (6, 24, 96):
        scores, labels, spk = trials(n)
        ci = eer_bootstrap(scores, labels, spk, 1000, seed=0)["eer"]
        eer = compute_eer(scores, labels.astype(int))[0]
        assert ci[0] <= eer <= ci[1], (n, ci, eer)
        widths.append(width(ci))
    assert widths[0] > widths[1] > widths[2], widths
    assert eer_bootstrap(*trials(6), 1000, seed=0) == eer_bootstrap(*trials(6), 1000, seed=0)


def test_summary_row_carries_the_intervals() -> None:
    row = summary_row({"ua": 0.8, "ci95": {"ua": [0.7, 0.9], "wa": [0.6, 0.95]}})
    assert (row["ua_ci_low"], row["ua_ci_high"]) == (0.7, 0.9)
    assert row["eer_ci_low"] is None
    assert summary_row({"eer": 0.1, "ci95": {"eer": [0.05, 0.2]}})["eer_ci_high"] == 0.2


@pytest.mark.e2e
def test_evaluate_writes_intervals(tmp_path: Path) -> None:
    from e2e_utils import read_json, run_script, speech_emodb_tree

    corpus = speech_emodb_tree(tmp_path / "emodb")
    run = tmp_path / "run"
    proc = run_script("evaluate.py", "experiment=egemaps_baseline", f"data.root={corpus}", "logger=csv",
                      "intervals.n_resamples=500", f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    assert set(res["ci95"]) == {"wa", "ua", "macro_f1"}
    for name, (lo, hi) in res["ci95"].items():
        assert lo <= res[name] <= hi, (name, lo, res[name], hi)
    assert res["ci"]["n_resamples"] == 500 and res["ci"]["unit"] == "speaker"
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| task"))
    assert "| ua | ua_ci_low | ua_ci_high |" in header
    metrics = (run / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "test/ua_ci_low" in metrics and "test/macro_f1_ci_high" in metrics


def test_emotion_verification_gets_an_eer_interval_per_emotion() -> None:
    from deeptalk_ser.data.manifest import Utterance
    from deeptalk_ser.evaluation.emotion_verification import emotion_verification

    # speakers a, b, c on three axes, two neutral utterances each; a's angry voice sits on b's axis
    eye, utts, rows = np.eye(3), [], []
    for k, spk in enumerate("abc"):
        for i in range(2):
            utts.append(Utterance(id=f"{spk}_n{i}", path="-", speaker=spk, label="neutral"))
            rows.append(eye[k])
        utts.append(Utterance(id=f"{spk}_angry", path="-", speaker=spk, label="angry"))
        rows.append(eye[1] if spk == "a" else eye[k])
    settings = {"n_resamples": 500, "seed": 0, "level": 0.95}
    res = emotion_verification(utts, np.array(rows), "neutral", intervals=settings)
    assert res["emotions"]["neutral"]["ci95"] == {"eer": [0.0, 0.0]}  # every speaker separates perfectly
    lo, hi = res["emotions"]["angry"]["ci95"]["eer"]
    # resamples without speaker a (all of a's trials follow a) separate perfectly: EER 0
    assert lo == 0.0 and hi >= res["emotions"]["angry"]["eer"] > 0
    assert "ci95" not in emotion_verification(utts, np.array(rows), "neutral")["emotions"]["angry"]


def test_score_verification_interval_follows_test_speakers() -> None:
    from deeptalk_ser.data.manifest import Utterance
    from deeptalk_ser.data.trials import generate_trials
    from deeptalk_ser.evaluation.verification import score_verification

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(6, 16))
    utts = [Utterance(id=f"s{s}_{k}", path="x.wav", speaker=f"s{s}") for s in range(6) for k in range(5)]
    emb = np.stack([centres[s] + 0.9 * rng.normal(size=16) for s in range(6) for _ in range(5)])
    index = {u.id: i for i, u in enumerate(utts)}
    trials = generate_trials(utts, 2, seed=0)
    settings = {"n_resamples": 1000, "seed": 0, "level": 0.95}
    out = score_verification(emb, index, trials, speaker_of={u.id: u.speaker for u in utts}, intervals=settings)
    lo, hi = out["ci95"]["eer"]
    assert lo <= out["eer"] <= hi
    assert "ci95" not in score_verification(emb, index, trials)


@pytest.mark.e2e
def test_verification_job_writes_an_eer_interval(tmp_path: Path) -> None:
    from e2e_utils import read_json, run_script, speech_kaldi_tree

    corpus = speech_kaldi_tree(tmp_path / "speechocean762", n_speakers=5, n_utts=3, sr=16000)
    run = tmp_path / "run"
    proc = run_script("evaluate.py", "task=verification", "data=speechocean762", "encoder=egemaps", f"data.root={corpus}",
                      "logger=csv", "intervals.n_resamples=300", f"hydra.run.dir={run}", tmp=tmp_path)
    res = read_json(run / "results.json")
    lo, hi = res["ci95"]["eer"]
    assert lo <= res["eer"] <= hi and res["ci"]["n_resamples"] == 300
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| task"))
    assert "| eer | eer_ci_low | eer_ci_high |" in header
    assert "test/eer_ci_low" in (run / "csv" / "metrics.csv").read_text().splitlines()[0]
