"""SVM backend choice: cuML on a GPU when installed, scikit-learn otherwise.

cuML is a ~6.5 GB optional extra whose import fails without a GPU, so it is imported lazily
and only when CUDA is visible. The chosen backend is recorded in every result.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from deeptalk_ser.utils.errors import ConfigError

log = logging.getLogger(__name__)


def cuml_available() -> bool:
    try:
        import torch

        if not torch.cuda.is_available():
            return False
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return importlib.util.find_spec("cuml") is not None


def select_backend(preference: str = "auto") -> str:
    if preference not in ("auto", "cuml", "sklearn"):
        raise ConfigError("classifier.backend", f"must be auto, cuml or sklearn, got {preference!r}")
    if preference == "sklearn":
        return "sklearn"
    if cuml_available():
        return "cuml"
    if preference == "cuml":
        raise ConfigError("classifier.backend", "cuml, but cuML or a CUDA GPU is not available (pip install '.[gpu]' on a GPU machine)")
    return "sklearn"


def make_svc(backend: str, C: float, gamma: float | str, seed: int) -> Any:
    """An RBF SVC with the given hyper-parameters from the chosen library."""
    if backend == "cuml":
        from cuml.svm import SVC  # lazy: import fails without a GPU

        return SVC(kernel="rbf", C=C, gamma=gamma)
    from sklearn.svm import SVC

    return SVC(kernel="rbf", C=C, gamma=gamma, random_state=seed)
