"""RunIf-style skip markers with readable reasons."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DEEPTALK_DATA_DIR", PROJECT_ROOT.parent / "shared" / "data"))


def shared(name: str) -> Path:
    return SHARED_DATA / name


def requires_shared(name: str) -> pytest.MarkDecorator:
    """Skip unless ``<shared data>/<name>`` exists (real speech is never copied into the repo)."""
    path = shared(name)
    return pytest.mark.skipif(not path.exists(), reason=f"real corpus {path} is absent (set DEEPTALK_DATA_DIR)")


def requires_cuml() -> pytest.MarkDecorator:
    """Skip unless a CUDA GPU and cuML (the optional ``gpu`` extra) are both present."""
    from deeptalk_ser.evaluation.classifiers.backend import cuml_available

    return pytest.mark.skipif(not cuml_available(), reason="needs a CUDA GPU and cuML (pip install '.[gpu]')")
