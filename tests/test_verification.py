"""Speaker-verification scoring: hand-worked EER/minDCF cases, brute-force cross-checks,
trial generation and the VoxCeleb trial-file format."""

from __future__ import annotations

import numpy as np
import pytest

from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.data.trials import Trial, generate_trials, read_trials, write_trials
from deeptalk_ser.evaluation.verification import compute_eer, compute_min_dcf, cosine_scores, score_verification


def _sl(tar: list[float], non: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(tar + non), np.array([1] * len(tar) + [0] * len(non))


# --------------------------------------------------------------------------- EER / minDCF by hand


def test_eer_crossing_on_an_operating_point():
    # targets .9 .8 .7 .2 | non-targets .6 .5 .3 .1 ; accept if score >= t
    # t=.6: miss = {.2} = 1/4, fa = {.6} = 1/4 -> equal, EER 0.25 at threshold .6
    s, l = _sl([0.9, 0.8, 0.7, 0.2], [0.6, 0.5, 0.3, 0.1])
    eer, thr = compute_eer(s, l)
    assert eer == pytest.approx(0.25)
    assert thr == pytest.approx(0.6)
    # p=0.5: normalised DCF = miss + fa (norm 0.5); best t=.7: miss 1/4, fa 0 -> 0.25
    assert compute_min_dcf(s, l, 0.5) == pytest.approx(0.25)
    # p=0.01: (0.01 miss + 0.99 fa) / 0.01 = miss + 99 fa; t=.7 -> 0.25
    assert compute_min_dcf(s, l, 0.01) == pytest.approx(0.25)


def test_eer_interpolated_between_operating_points():
    # targets .9 .8 .5 .2 | non-targets .6 .5 .3 .1
    # t=.5: miss {.2} = 1/4, fa {.6,.5} = 2/4  (miss - fa = -1/4)
    # t=.6: miss {.2,.5} = 2/4, fa {.6} = 1/4  (miss - fa = +1/4)
    # crossing halfway: EER = 1/4 + 1/2 * 1/4 = 3/8, threshold .5 + 1/2 * .1 = .55
    s, l = _sl([0.9, 0.8, 0.5, 0.2], [0.6, 0.5, 0.3, 0.1])
    eer, thr = compute_eer(s, l)
    assert eer == pytest.approx(0.375)
    assert thr == pytest.approx(0.55)
    # p=0.5: miss + fa; t=.8: 2/4 + 0 = 0.5 is the minimum (t=.6: .75, t=.2: 0 + 3/4)
    assert compute_min_dcf(s, l, 0.5) == pytest.approx(0.5)
    # p=0.9: (.9 miss + .1 fa) / .1 = 9 miss + fa; t=.2: 0 + 3/4 = 0.75 (t=.1 gives 1)
    assert compute_min_dcf(s, l, 0.9) == pytest.approx(0.75)
    # c_fa=10, p=0.5: (.5 miss + 5 fa) / .5 = miss + 10 fa; only fa=0 is cheap: t=.8 -> 0.5
    assert compute_min_dcf(s, l, 0.5, c_fa=10.0) == pytest.approx(0.5)


def test_perfect_and_reversed():
    s, l = _sl([0.9, 0.8, 0.7], [0.3, 0.2, 0.1, 0.0])
    eer, thr = compute_eer(s, l)
    assert eer == 0.0 and thr == pytest.approx(0.7)
    assert compute_min_dcf(s, l, 0.01) == 0.0
    eer, _ = compute_eer(-s, l)
    assert eer == pytest.approx(1.0)
    assert compute_min_dcf(-s, l, 0.01) == pytest.approx(1.0)  # only the trivial systems


def test_ties_move_together():
    # all tied: operating points (miss 0, fa 1) and (1, 0) only -> EER 0.5, minDCF 1
    s, l = np.zeros(6), np.array([1, 0, 1, 0, 1, 0])
    assert compute_eer(s, l)[0] == pytest.approx(0.5)
    assert compute_min_dcf(s, l, 0.01) == pytest.approx(1.0)
    # targets .9 .5 | non-targets .5 .1: t=.5 -> (miss 0, fa 1/2), t=.9 -> (1/2, 0);
    # a threshold may not split the tie, so EER = 1/4 (a sweep over sorted trials would
    # wrongly reach (0, 0) or (1/2, 1/2) depending on how the tie is ordered)
    for order in ([0, 1, 2, 3], [2, 1, 0, 3], [3, 2, 1, 0]):
        s, l = _sl([0.9, 0.5], [0.5, 0.1])
        assert compute_eer(s[order], l[order])[0] == pytest.approx(0.25)


def _brute_force(scores: np.ndarray, labels: np.ndarray) -> tuple[list[float], list[float]]:
    """Miss / false-alarm rates at every unique score and +inf, one explicit loop each."""
    tar = [x for x, y in zip(scores, labels) if y == 1]
    non = [x for x, y in zip(scores, labels) if y == 0]
    miss, fa = [], []
    for t in sorted(set(scores.tolist())) + [float("inf")]:
        miss.append(sum(x < t for x in tar) / len(tar))
        fa.append(sum(x >= t for x in non) / len(non))
    return miss, fa


def _brute_eer(miss: list[float], fa: list[float]) -> float:
    # first point where the ROC reaches or passes the diagonal; intersect the segment from
    # the previous point with miss == fa
    for i in range(len(miss)):
        if miss[i] >= fa[i]:
            if i == 0 or miss[i] == fa[i]:
                return miss[i]
            m0, f0, m1, f1 = miss[i - 1], fa[i - 1], miss[i], fa[i]
            a = (f0 - m0) / ((m1 - m0) - (f1 - f0))
            return m0 + a * (m1 - m0)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("seed", range(5))
def test_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 150
    labels = (rng.random(n) < 0.3).astype(int)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(labels * 1.0, 1.0), 1)  # rounding creates many ties
    miss, fa = _brute_force(scores, labels)
    assert compute_eer(scores, labels)[0] == pytest.approx(_brute_eer(miss, fa), abs=1e-12)
    for p in (0.01, 0.05, 0.5):
        want = min(p * m + (1 - p) * f for m, f in zip(miss, fa)) / min(p, 1 - p)
        assert compute_min_dcf(scores, labels, p) == pytest.approx(want, abs=1e-12)


def test_metric_input_errors():
    with pytest.raises(ValueError, match="both target and non-target"):
        compute_eer(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="NaN"):
        compute_eer(np.array([np.nan, 0.2]), np.array([1, 0]))
    with pytest.raises(ValueError, match="p_target"):
        compute_min_dcf(np.array([0.1, 0.2]), np.array([1, 0]), 1.0)


# --------------------------------------------------------------------------- cosine scoring


def test_cosine_scores_match_loop_and_report_missing():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(5, 8)).astype(np.float32)
    emb[4] = 0.0
    index = {f"u{i}": i for i in range(5)}
    trials = [(1, "u0", "u1"), (0, "u2", "u3"), (1, "u3", "u3"), (0, "u0", "u4")]
    got = cosine_scores(emb, index, trials, chunk=3)  # chunk < n_trials exercises chunking
    want = []
    for _, a, b in trials[:3]:
        x, y = emb[index[a]].astype(float), emb[index[b]].astype(float)
        want.append(x @ y / np.linalg.norm(x) / np.linalg.norm(y))
    np.testing.assert_allclose(got[:3], want, rtol=1e-5)
    assert got[3] == 0.0  # zero vector scores 0, not NaN
    with pytest.raises(KeyError, match="2 trial id.*nope.*zilch"):
        cosine_scores(emb, index, [(1, "u0", "nope"), (0, "zilch", "u1")])


def test_score_verification_summary():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 16))
    utts, rows = [], []
    for s in range(4):
        for k in range(5):
            utts.append(Utterance(id=f"s{s}_{k}", path="x.wav", speaker=f"s{s}"))
            rows.append(centres[s] + 0.1 * rng.normal(size=16))
    emb = np.stack(rows)
    index = {u.id: i for i, u in enumerate(utts)}
    trials = generate_trials(utts, 2, seed=0)
    out = score_verification(emb, index, trials)
    assert out["n_target"] == 4 * 10 and out["n_nontarget"] == 80 and out["n_trials"] == 120
    assert out["eer"] == 0.0
    assert set(out["min_dcf"]) == {"p0.01", "p0.05"}
    assert all(v == 0.0 for v in out["min_dcf"].values())
    assert isinstance(out["eer"], float) and isinstance(out["eer_threshold"], float)


# --------------------------------------------------------------------------- trial generation


def _utts(counts: dict[str, int]) -> list[Utterance]:
    return [
        Utterance(id=f"{spk}-{i}", path=f"{spk}/{i}.wav", speaker=spk)
        for spk, n in counts.items()
        for i in range(n)
    ]


def _check_trials(utts: list[Utterance], trials: list[Trial]) -> None:
    spk = {u.id: u.speaker for u in utts}
    pos = {u.id: i for i, u in enumerate(utts)}
    pairs = [frozenset((e, t)) for _, e, t in trials]
    assert len(set(pairs)) == len(pairs), "duplicate pair"
    for label, e, t in trials:
        assert label == int(spk[e] == spk[t])
        assert pos[e] < pos[t]


def test_generate_trials_counts_and_determinism():
    utts = _utts({"A": 3, "B": 2, "C": 1, "D": 4})  # targets 3 + 1 + 0 + 6 = 10; pairs 45
    trials = generate_trials(utts, None, seed=3)
    _check_trials(utts, trials)
    labels = [t.label for t in trials]
    assert labels.count(1) == 10 and labels.count(0) == 10  # default: one per target
    assert trials == generate_trials(utts, None, seed=3)
    assert [t.label for t in generate_trials(utts, 2, seed=0)].count(0) == 20
    assert [t.label for t in generate_trials(utts, 0.25, seed=0)].count(0) == 3  # round(2.5)
    every = generate_trials(utts, 3.5, seed=0)  # 35 = all different-speaker pairs
    _check_trials(utts, every)
    assert len(every) == 45
    with pytest.raises(ValueError, match="only 35"):
        generate_trials(utts, 4, seed=0)
    with pytest.raises(ValueError, match="no target"):
        generate_trials(_utts({"A": 1, "B": 1}), None, seed=0)


def test_generate_trials_sparse_sampling():
    # 20 speakers x 10: 900 targets, 19000 non-target pairs -> rejection-sampling path
    utts = _utts({f"S{s:02d}": 10 for s in range(20)})
    a = generate_trials(utts, None, seed=0)
    _check_trials(utts, a)
    assert sum(t.label for t in a) == 900 and len(a) == 1800
    assert a == generate_trials(utts, None, seed=0)
    b = generate_trials(utts, None, seed=1)
    assert a[:900] == b[:900] and a[900:] != b[900:]  # targets fixed, non-targets reseeded


# --------------------------------------------------------------------------- trial files


def test_trial_file_round_trip(tmp_path):
    trials = [Trial(1, "id10001/a", "id10001/b"), Trial(0, "x", "y")]
    path = tmp_path / "trials.txt"
    write_trials(path, trials)
    assert path.read_text() == "1 id10001/a id10001/b\n0 x y\n"
    assert read_trials(path) == trials
    assert read_trials(path)[1] == (0, "x", "y")
    with pytest.raises(ValueError, match="whitespace"):
        write_trials(path, [(1, "a b", "c")])


@pytest.mark.parametrize(
    "text, problem",
    [("1 a b\n\n1 a\n", "2 field"), ("1 a b\ntarget a b\n", "label must be 1 or 0")],
)
def test_malformed_trial_line(tmp_path, text, problem):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=problem) as info:
        read_trials(path)
    assert info.value.path == str(path)
    assert info.value.line == (3 if "field" in problem else 2)
    assert f"bad.txt:{info.value.line}" in str(info.value)


def test_missing_trial_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_trials(tmp_path / "nope.txt")


def test_pairs_helper_is_exhaustive():
    # guard for _check_trials itself: it must flag a duplicated (reversed) pair
    utts = _utts({"A": 2, "B": 1})
    with pytest.raises(AssertionError):
        _check_trials(utts, [Trial(1, "A-0", "A-1"), Trial(1, "A-1", "A-0")])
    assert generate_trials(utts, None, 0)[0] == Trial(1, "A-0", "A-1")


def test_official_trial_lists_name_manifest_ids(tmp_path):
    """veri_test2.txt writes ``id10270/5r0dWxy17C8/00001.wav``; manifest ids carry no suffix."""
    path = tmp_path / "veri_test2.txt"
    path.write_text("1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n0 a/b/c.WAV d/e/f\n")
    assert read_trials(path) == [(1, "id10270/x6uYqmx31kE/00001", "id10270/8jEAjG6SegY/00008"), (0, "a/b/c", "d/e/f")]
