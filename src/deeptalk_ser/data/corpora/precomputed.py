"""Precomputed embedding arrays (``<prefix>_x.npy`` features + ``<prefix>_y.npy`` labels).

Made for the paper authors' released CREMA-D DeepTalk embeddings (``all_train_x.npy``, ...),
whose label codes are 1 happy, 2 sad, 3 neutral, 5 angry. No speaker is known for these rows,
so protocols that need speakers must refuse them (see :mod:`deeptalk_ser.evaluation.protocols`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.utils.io import file_stat
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.data.corpora.base import CorpusLoader

DEEPTALK_AUTHORS_CODES = {1: "happy", 2: "sad", 3: "neutral", 5: "angry"}
UNKNOWN_SPEAKER = "unknown"


class EmbeddingArrayCorpus(CorpusLoader):
    """``splits`` maps a split name to an array prefix, e.g. ``{train: all_train, test: all_test}``."""
    name = "embeddings"

    has_audio = False

    def __init__(self, root: str | Path, splits: Mapping[str, str] | None = None,
                 label_codes: Mapping[int, str] | None = None) -> None:
        super().__init__(root)
        self.splits = dict(splits or {"train": "all_train", "test": "all_test"})
        self.label_codes = {int(k): v for k, v in (label_codes or DEEPTALK_AUTHORS_CODES).items()}

    def options(self) -> dict[str, Any]:
        # the arrays' size/mtime too: changed arrays must re-prepare and re-store
        stats = {f"{prefix}_{part}.npy": file_stat(self.root / f"{prefix}_{part}.npy")
                 for prefix in self.splits.values() for part in ("x", "y")}
        return {**super().options(), "splits": self.splits, "label_codes": self.label_codes, "files": stats}

    def _arrays(self, prefix: str) -> tuple[np.ndarray, np.ndarray, Path, Path]:
        xp, yp = self.require(f"{prefix}_x.npy"), self.require(f"{prefix}_y.npy")
        try:
            x, y = np.load(xp), np.load(yp)
        except (ValueError, OSError) as exc:
            raise DataError(xp, f"cannot read array pair ({exc})") from exc
        if x.ndim != 2:
            raise DataError(xp, f"expected a 2-D (n, dim) array, got shape {x.shape}")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(yp, f"expected {len(x)} labels to match {xp.name}, got shape {y.shape}")
        if not np.all(np.isfinite(x)):
            raise DataError(xp, "array holds NaN or inf")
        return x, y, xp, yp

    def scan(self) -> list[Utterance]:
        utts = []
        for split, prefix in self.splits.items():
            x, y, xp, yp = self._arrays(prefix)
            if not np.issubdtype(y.dtype, np.integer) and not (np.all(np.isfinite(y)) and np.all(y == np.round(y))):
                raise DataError(yp, "label codes must be whole numbers (found fractions, NaN or inf)")
            for row, code in enumerate(y.tolist()):
                if int(code) not in self.label_codes:
                    raise DataError(yp, f"row {row}: unknown label code {code} (known: {sorted(self.label_codes)})")
                utts.append(Utterance(id=f"{prefix}:{row}", path=f"{xp.name}#{row}", speaker=UNKNOWN_SPEAKER,
                                      label=self.label_codes[int(code)], split=split, corpus=self.name,
                                      extra={"label_raw": int(code)}))
        return utts

    def load_embeddings(self) -> tuple[list[str], np.ndarray]:
        """Ids (as in :meth:`scan`) and the float32 feature matrix in the same order."""
        ids, mats = [], []
        for prefix in self.splits.values():
            x, _, _, _ = self._arrays(prefix)
            ids.extend(f"{prefix}:{row}" for row in range(len(x)))
            mats.append(x.astype(np.float32, copy=False))
        return ids, np.concatenate(mats)
