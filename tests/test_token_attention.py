"""Mean GST token attention per emotion (evaluation/token_attention.py): the means and the figure CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deeptalk_ser.data.manifest import Utterance, write_manifest
from deeptalk_ser.embedding.store import EmbeddingStore
from deeptalk_ser.evaluation.token_attention import main, mean_attention


def _rows(token: int, n: int) -> np.ndarray:
    """``n`` attention rows, every head on ``token``."""
    x = np.zeros((n, 8, 10))
    x[:, :, token] = 1.0
    return x.reshape(n, 80)


def test_means_per_emotion() -> None:
    X = np.concatenate([_rows(2, 3), _rows(7, 2), _rows(0, 1)])
    means = mean_attention(X, ["angry"] * 3 + ["sad"] * 2 + [None])
    assert list(means) == ["angry", "sad"] and means["angry"].shape == (8, 10)
    assert (means["angry"][:, 2] == 1).all() and (means["sad"][:, 7] == 1).all()
    with pytest.raises(ValueError, match="80-d"):
        mean_attention(np.zeros((2, 256)), ["a", "b"])


def test_cli_writes_the_figure(tmp_path: Path) -> None:
    utts = [Utterance(id=f"u{i}", path="-", speaker="s", label=lab) for i, lab in enumerate(["angry", "sad", "sad"])]
    write_manifest(tmp_path / "manifest.jsonl", utts)
    EmbeddingStore.write(tmp_path / "store", [u.id for u in utts], np.concatenate([_rows(1, 1), _rows(4, 2)]), {})
    main([str(tmp_path / "store"), str(tmp_path / "manifest.jsonl"), str(tmp_path / "fig.png")])
    assert (tmp_path / "fig.png").stat().st_size > 0
