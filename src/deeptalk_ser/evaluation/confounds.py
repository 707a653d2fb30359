"""Confounds and degenerate results, said in ``results.json["warnings"]`` instead of hidden.

* **Speaker-label structure.** Every emotion run records how much the speaker tells about the
  label: the share of speakers whose utterances all carry one label, and the normalised mutual
  information between speaker and label (scikit-learn's ``normalized_mutual_info_score``; 0 =
  every speaker has the corpus's label mix, 1 = the speaker determines the label).
* **Per-speaker normalisation on a confounded corpus.** ``features.per_speaker`` removes each
  speaker's mean (or z-scores them); when most speakers carry one label that mean *is* the label,
  and removing it removes what the head should find (issue 21: a natural corpus collapsed to
  chance this way). The run goes on (the number is still a valid measurement of that
  setting) but carries a warning with the word "confound".
* **Degenerate predictions.** A fold whose test utterances span several classes but are all
  predicted as one, a run predicting one class only, and a run whose speaker-level UA interval
  contains chance (1 / number of classes) are flagged: their UA does not show that the head learned
  anything.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

#: above this share of single-label speakers, per-speaker normalisation is warned about
CONFOUND_SHARE = 0.5


def speaker_label_structure(speakers: Sequence[Any], labels: Sequence[Any]) -> dict[str, Any]:
    """Share of speakers with a single label and NMI(speaker, label) over the scored utterances."""
    speakers, labels = np.asarray(speakers, dtype=object), np.asarray(labels, dtype=object)
    per_speaker = {s: set(labels[speakers == s].tolist()) for s in dict.fromkeys(speakers.tolist())}
    single = sum(len(v) == 1 for v in per_speaker.values())
    return {"n_speakers": len(per_speaker), "n_single_label_speakers": single,
            "single_label_share": single / len(per_speaker) if per_speaker else 0.0,
            "nmi": float(normalized_mutual_info_score(speakers.astype(str), labels.astype(str))) if len(labels) else 0.0}


def confound_warnings(structure: dict[str, Any], per_speaker: str) -> list[str]:
    """The confound warning when ``features.per_speaker`` normalises speakers most of whom carry one label."""
    if per_speaker == "none" or structure["single_label_share"] <= CONFOUND_SHARE:
        return []
    return [f"speaker-label confound: {structure['n_single_label_speakers']} of {structure['n_speakers']} speakers carry "
            f"a single label (NMI speaker-label {structure['nmi']:.2f}), and features.per_speaker={per_speaker} removes "
            "each speaker's statistics, and with them the label; read this score with features.per_speaker=none beside it"]


def degenerate_warnings(y_true: np.ndarray, y_pred: np.ndarray, fold_names: Sequence[str], fold_sizes: Sequence[int],
                        ua_interval: Sequence[float] | None, n_classes: int) -> list[str]:
    """Flags for folds and a run whose predictions all fall into one class, and a UA interval that
    contains chance. ``y_true``/``y_pred`` are pooled in fold order, ``fold_sizes`` long each."""
    out, folds = [], []
    bounds = np.cumsum([0, *fold_sizes])
    for name, lo, hi in zip(fold_names, bounds[:-1], bounds[1:]):
        true, pred = set(y_true[lo:hi].tolist()), Counter(y_pred[lo:hi].tolist())
        if len(true) > 1 and len(pred) == 1:  # a test fold of one true class predicted as it is no collapse
            folds.append(f"{name} (all {hi - lo} {next(iter(pred))!r})")
    if folds:  # one warning for all such folds: the final line stays readable
        out.append(f"degenerate fold{'s' if len(folds) > 1 else ''} ({len(folds)} of {len(fold_names)}) predicting one "
                   f"class for test utterances of several: {', '.join(folds)}")
    if len(y_pred) and len(set(y_pred.tolist())) == 1:
        out.append(f"degenerate run: every prediction is {y_pred[0]!r}")
    chance = 1.0 / n_classes if n_classes else None
    if chance is not None and ua_interval is not None and None not in ua_interval and \
            ua_interval[0] <= chance <= ua_interval[1]:
        out.append(f"UA interval [{ua_interval[0]:.3f}, {ua_interval[1]:.3f}] contains chance ({chance:.3f}, "
                   f"1/{n_classes} classes): not distinguishable from guessing")
    return out


def assess_run(speakers: np.ndarray, labels: np.ndarray, per_speaker: str, y_true: np.ndarray, y_pred: np.ndarray,
               fold_records: Sequence[dict[str, Any]], ci95: dict[str, Any], classes: Sequence[str]
               ) -> tuple[dict[str, Any], list[str]]:
    """An emotion run's speaker-label structure (``results.json`` ``speaker_labels``) and its
    confound and degenerate-result warnings, each also logged."""
    import logging

    structure = speaker_label_structure(speakers, labels)
    found = confound_warnings(structure, per_speaker) + degenerate_warnings(
        np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object), [str(f["name"]) for f in fold_records],
        [int(f["n_test"]) for f in fold_records], (ci95 or {}).get("ua"), len(classes))
    for w in found:
        logging.getLogger(__name__).warning(w)
    return structure, found
