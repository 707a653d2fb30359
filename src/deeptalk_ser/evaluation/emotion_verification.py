"""Does emotion hurt speaker verification? Enrol on neutral speech, test in each emotion.

The paper lists this analysis as a contribution and leaves it open. Protocol (one speaker model
per speaker, the enrolment a system would have on file):

* **enrolment**: the mean of the L2-normalised embeddings of a speaker's ``enrol_label``
  (neutral) utterances; speakers without any are left out (counted);
* **trials per test emotion E**: every utterance in E is scored against every enrolled speaker
  model by cosine: against its own speaker's model it is a target trial, against the others a
  non-target trial. For E = neutral (the reference), the target model leaves the test
  utterance out of the mean (a speaker with a single neutral utterance then has no neutral
  target trial), so no utterance is ever scored against a model that contains it;
* **scores**: EER and minDCF per test emotion, beside the neutral-neutral reference, and
  their difference to it.

Target and non-target trials of one emotion come from the same utterances, so a change of EER
across emotions measures how the emotion moves a speaker's embedding away from their neutral
model relative to the other speakers' models.
"""

from __future__ import annotations

from typing import Any, Sequence

import logging

import numpy as np

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.evaluation.intervals import eer_bootstrap
from deeptalk_ser.evaluation.verification import compute_eer, compute_min_dcf, unit_rows
from deeptalk_ser.utils.errors import ConfigError

log = logging.getLogger(__name__)


def emotion_verification(utts: Sequence[Utterance], emb: np.ndarray, enrol_label: str = "neutral",
                         emotions: Sequence[str] | None = None, p_targets: Sequence[float] = (0.01, 0.05),
                         min_trials: int = 1, intervals: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per-emotion verification against neutral speaker models (see module docstring).

    ``utts[i]`` labels row ``i`` of ``emb``; ``emotions`` restricts and orders the test emotions
    (default: every label present, the enrolment label first). With ``intervals``
    (``n_resamples``, ``seed``, ``level``) each emotion also gets ``ci95: {"eer": [lo, hi]}``, a
    speaker-level bootstrap interval: the test speakers of that emotion are resampled, each
    taking all trials of their test utterances, target and non-target
    (:mod:`deeptalk_ser.evaluation.intervals`)."""
    if len(utts) != len(emb):
        raise ValueError(f"{len(utts)} utterances for {len(emb)} embeddings")
    unit = unit_rows(emb)
    labels = np.array([u.label for u in utts], dtype=object)
    speakers = np.array([u.speaker for u in utts], dtype=object)
    present = sorted({str(x) for x in labels if x is not None})
    if enrol_label not in present:
        raise ConfigError("task.enrol_label", f"no utterance labelled {enrol_label!r} (labels present: {present})")
    order = list(emotions) if emotions is not None else [enrol_label] + [e for e in present if e != enrol_label]
    unknown = [e for e in order if e not in present]
    if unknown:
        raise ConfigError("task.emotions", f"{unknown} not among the labels present {present}")

    enrol_mask = labels == enrol_label
    enrolled = sorted(set(speakers[enrol_mask]))
    spk_index = {s: k for k, s in enumerate(enrolled)}
    sums = np.zeros((len(enrolled), unit.shape[1]))
    counts = np.zeros(len(enrolled), dtype=np.int64)
    for i in np.flatnonzero(enrol_mask):
        k = spk_index[speakers[i]]
        sums[k] += unit[i]
        counts[k] += 1
    models = unit_rows(sums / counts[:, None])
    if len(enrolled) < 2:
        raise ConfigError("task.enrol_label", f"{len(enrolled)} speaker(s) with {enrol_label!r} speech: "
                                              "verification needs at least 2 enrolled speakers")

    per_emotion: dict[str, dict[str, Any]] = {}
    for emotion in order:
        rows = np.flatnonzero((labels == emotion) & np.isin(speakers, enrolled))
        if len(rows) == 0:
            continue
        own = np.array([spk_index[s] for s in speakers[rows]])
        scores = unit[rows] @ models.T  # (n_test, n_speakers)
        target = scores[np.arange(len(rows)), own].copy()
        keep_target = np.ones(len(rows), dtype=bool)
        if emotion == enrol_label:  # leave the test utterance out of its own speaker's model
            rest = sums[own] - unit[rows]
            n_rest = counts[own] - 1
            keep_target = n_rest > 0
            loo = unit_rows(rest[keep_target] / n_rest[keep_target, None])
            target = np.einsum("ij,ij->i", unit[rows][keep_target], loo)
        nontarget_mask = np.ones_like(scores, dtype=bool)
        nontarget_mask[np.arange(len(rows)), own] = False
        nontarget = scores[nontarget_mask]
        if len(target) < min_trials or len(nontarget) < min_trials:
            continue
        s = np.concatenate([target, nontarget])
        y = np.concatenate([np.ones(len(target)), np.zeros(len(nontarget))])
        eer, thr = compute_eer(s, y)
        extra: dict[str, Any] = {}
        if intervals is not None:  # a trial follows its test utterance's speaker
            trial_speakers = np.concatenate([own[keep_target], np.repeat(own, len(enrolled) - 1)])
            extra["ci95"] = eer_bootstrap(s, y, trial_speakers, int(intervals["n_resamples"]), int(intervals["seed"]),
                                          float(intervals["level"]))
        per_emotion[emotion] = {
            "n_utterances": int(len(rows)), "n_speakers": int(len(set(own))),
            "n_target": int(len(target)), "n_nontarget": int(len(nontarget)),
            "eer": eer, "eer_threshold": thr,
            "min_dcf": {f"p{p:g}": compute_min_dcf(s, y, p_target=p) for p in p_targets},
            "target_score_mean": float(target.mean()), "nontarget_score_mean": float(nontarget.mean()),
            **extra,
        }
    if not per_emotion:
        raise ConfigError("task.emotions", "no test emotion has both target and non-target trials")
    ref = per_emotion.get(enrol_label)
    if ref is None:  # every speaker has a single neutral utterance: no leave-one-out model to test against
        log.warning("no %r reference trials (each enrolled speaker has one %r utterance): per-emotion scores are "
                    "reported without the reference", enrol_label, enrol_label)
    for rec in per_emotion.values():
        rec["eer_minus_reference"] = None if ref is None else rec["eer"] - ref["eer"]
    others = [e for e in per_emotion if e != enrol_label]
    pooled_eer = None
    if others:
        pooled_eer = float(np.mean([per_emotion[e]["eer"] for e in others]))
    return {"enrol_label": enrol_label, "enrolled_speakers": len(enrolled),
            "speakers_without_enrolment": sorted(set(speakers) - set(enrolled)),
            "emotions": per_emotion, "reference_eer": None if ref is None else ref["eer"],
            "mean_emotional_eer": pooled_eer}


def plot_emotion_verification(res: dict[str, Any], path: str, title: str, before: dict[str, Any] | None = None) -> str:
    """Bar plot of EER per test emotion, the neutral reference first and marked by a line; with
    ``before`` (the same trials without compensation) its bars stand beside each emotion's."""
    from deeptalk_ser.utils.reporting import pyplot_agg

    plt = pyplot_agg()

    names = list(res["emotions"])
    eers = [res["emotions"][e]["eer"] for e in names]
    x = np.arange(len(names), dtype=float)
    width = 0.8 if before is None else 0.4
    fig, ax = plt.subplots(figsize=(1.0 + (0.9 if before is None else 1.3) * len(names), 3.4))
    bars = [(eers, x if before is None else x + width / 2, "compensated" if before is not None else None)]
    if before is not None:
        bars.insert(0, ([before["emotions"].get(e, {}).get("eer", np.nan) for e in names], x - width / 2, "uncompensated"))
    for k, (vals, pos, label) in enumerate(bars):
        colours = ["tab:grey" if e == res["enrol_label"] else ("tab:red" if k == len(bars) - 1 else "tab:orange")
                   for e in names]
        ax.bar(pos, vals, width=width, color=colours, label=label, alpha=1.0 if k == len(bars) - 1 else 0.55)
        for p, v in zip(pos, vals):
            if np.isfinite(v):
                ax.text(p, v, f"{v:.3f}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(x, names)
    if res["reference_eer"] is not None:
        ax.axhline(res["reference_eer"], color="black", lw=0.8, ls="--", label=f"{res['enrol_label']} reference")
    if res["reference_eer"] is not None or before is not None:
        ax.legend(fontsize=7)
    ax.set_ylabel("EER")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
