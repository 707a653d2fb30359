"""Per-speaker normalisation of embeddings, a classic SER practice (speaker normalisation,
Busso et al.): a speaker encoder's embedding is dominated by who speaks, so subtracting each
speaker's own mean (``mean``), or z-scoring per speaker (``zscore``), leaves what changes
within a speaker, emotion among it.

The statistics come from each speaker's own utterances without their labels, train and test
speakers alike, so no test label is used; a deployed system does the same with the unlabelled
speech it has of a speaker. It does need several utterances per test speaker.
"""

from __future__ import annotations

import numpy as np

from deeptalk_ser.utils.errors import ConfigError

MODES = ("none", "mean", "zscore")


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES` (called before any extraction)."""
    if mode not in MODES:
        raise ConfigError("features.per_speaker", f"must be one of {list(MODES)}, got {mode!r}")
    return mode


def normalise_per_speaker(X: np.ndarray, speakers: np.ndarray, mode: str = "none", eps: float = 1e-8) -> np.ndarray:
    """``X`` with each speaker's rows centred (``mean``) or standardised (``zscore``) on that
    speaker's own statistics; ``none`` returns ``X`` unchanged."""
    if check_mode(mode) == "none":
        return X
    out = np.asarray(X, dtype=np.float32).copy()
    speakers = np.asarray(speakers, dtype=object)
    for spk in np.unique(speakers):
        rows = speakers == spk
        block = out[rows]
        block -= block.mean(axis=0)
        if mode == "zscore":
            block /= block.std(axis=0) + eps
        out[rows] = block
    return out
