"""openSMILE eGeMAPSv02 functionals (88-d): the classic hand-crafted, non-speaker baseline.

Not L2-normalised and of very different scales per dimension, so an RBF SVM needs
standardisation and ``gamma='scale'`` on them (see ``conf/experiment/egemaps_baseline.yaml``).
"""

from __future__ import annotations

import numpy as np

from deeptalk_ser.embedding.encoders.base import SpeakerEncoder


class EGeMAPSEncoder(SpeakerEncoder):
    name = "egemaps"
    embedding_dim = 88
    normalized = False

    def __init__(self, frontend=None, device: str = "cpu", min_duration_s: float = 0.1) -> None:
        super().__init__(frontend, device)
        import opensmile

        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                     feature_level=opensmile.FeatureLevel.Functionals)
        self.min_duration_s = min_duration_s

    def _one(self, wav: np.ndarray) -> np.ndarray:
        if not np.any(wav):  # digital silence: openSMILE returns an all-zero row that looks like data
            return np.full(self.embedding_dim, np.nan, dtype=np.float32)
        feats = self.smile.process_signal(wav, self.sample_rate).to_numpy()[0]
        return np.nan_to_num(feats.astype(np.float32))

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        return np.stack([self._one(w) for w in windows])

    def embed_utterance(self, wav: np.ndarray) -> np.ndarray | None:
        if len(wav) < self.min_duration_s * self.sample_rate:
            return None
        feats = self._one(wav)
        return None if np.isnan(feats).all() else feats

    def config(self) -> dict:
        return {**super().config(), "feature_set": "eGeMAPSv02", "level": "functionals",
                "min_duration_s": self.min_duration_s}
