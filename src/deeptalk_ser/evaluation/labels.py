"""Emotion label mappings (ER / ED): which corpus labels take part and what the classifier must predict.

ER = 4-class (angry, sad, happy, neutral). ED = neutral vs emotion present, over the same
four classes. Each task keeps two label levels: *fine* (the 4 ER classes, what a hierarchical
head is trained on) and *task* labels (what is scored), so every head is scored end to end on
the task's own classes. Labels a task does not map are counted (:meth:`EmotionLabels.left_out`)
and a class without utterances is found (:meth:`EmotionLabels.missing_classes`) so that the run
can name the one and refuse the other instead of scoring fewer classes under the task's name.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Container, Iterable, Sequence

import numpy as np

from deeptalk_ser.data.manifest import Utterance

#: how an utterance without a label is counted among the labels a task leaves out
NO_LABEL = "(no label)"


def count_labels(labels: Iterable[str | None], skip: Container[str | None] = ()) -> dict[str, int]:
    """How many of each label, most first (then by name), leaving out labels in ``skip``: what a
    task left out is listed this way, so an unknown or misspelt label never vanishes without a word."""
    counts = Counter(NO_LABEL if lab is None else str(lab) for lab in labels if lab not in skip)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def describe_counts(counts: dict[str, int], most: int = 10) -> str:
    """``bored (8), angri (4)``: at most ``most`` labels, then how many more."""
    shown = ", ".join(f"{k} ({n})" for k, n in list(counts.items())[:most])
    return shown + (f" and {len(counts) - most} more" if len(counts) > most else "")


@dataclass
class EmotionLabels:
    name: str
    classes: list[str]
    #: corpus emotion name -> fine (ER) class; emotions not listed are left out of the task.
    label_map: dict[str, str]
    #: fine class -> task class (identity when empty).
    coarse_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.label_map, self.coarse_map, self.classes = dict(self.label_map), dict(self.coarse_map), list(self.classes)
        targets = {self.coarse_map.get(f, f) for f in self.label_map.values()}
        if targets != set(self.classes):
            raise ValueError(f"task {self.name}: mapped classes {sorted(targets)} != declared {sorted(self.classes)}")

    def select(self, utts: Sequence[Utterance]) -> tuple[list[Utterance], np.ndarray]:
        """Utterances taking part and their fine labels."""
        kept = [u for u in utts if u.label in self.label_map]
        return kept, np.array([self.label_map[u.label] for u in kept], dtype=object)

    def left_out(self, utts: Sequence[Utterance]) -> dict[str, int]:
        """Labels of ``utts`` this task does not map, with their counts (see :func:`count_labels`)."""
        return count_labels((u.label for u in utts), skip=self.label_map)

    def to_task_labels(self, fine: np.ndarray) -> np.ndarray:
        if not self.coarse_map:
            return fine
        return np.array([self.coarse_map[f] for f in fine], dtype=object)

    def missing_classes(self, fine: np.ndarray) -> list[str]:
        """Task classes no utterance has: such a task cannot be scored (its UA would be the mean
        over the other classes, under the task's name)."""
        present = set(self.to_task_labels(np.asarray(fine, dtype=object)).tolist())
        return [c for c in self.classes if c not in present]

    def coverage_warnings(self, fine: np.ndarray) -> list[str]:
        """For a task whose classes merge fine classes (ED): each task class that is scored
        without some of its fine classes, said in words (the score is not the usual one)."""
        present = set(np.asarray(fine, dtype=object).tolist())
        warnings = []
        for c in self.classes:
            parts = sorted({f for f in self.label_map.values() if self.coarse_map.get(f, f) == c})
            missing = [f for f in parts if f not in present]
            if missing and len(missing) < len(parts):  # none at all: a missing class, refused
                warnings.append(f"task {self.name} class {c} has no {', '.join(missing)} utterance: it is scored "
                                f"on {', '.join(f for f in parts if f in present)} only")
        return warnings

