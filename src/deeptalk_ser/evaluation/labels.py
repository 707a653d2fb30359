"""Emotion label mappings (ER / ED): which corpus labels take part and what the classifier must predict.

ER = 4-class (angry, sad, happy, neutral). ED = neutral vs emotion present, over the same
four classes. Each task keeps two label levels: *fine* (the 4 ER classes, what a hierarchical
head is trained on) and *task* labels (what is scored), so every head is scored end to end on
the task's own classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from deeptalk_ser.data.manifest import Utterance


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

    def to_task_labels(self, fine: np.ndarray) -> np.ndarray:
        if not self.coarse_map:
            return fine
        return np.array([self.coarse_map[f] for f in fine], dtype=object)

