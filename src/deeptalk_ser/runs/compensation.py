"""``compensation=nap|lda``: learn the emotion compensation (evaluation/compensation.py) where
``compensation.data`` says, and return the test side it may be applied to.

* ``compensation.data=same``: the corpus's own speakers are split (seeded, speaker-disjoint);
  the transform is fitted on one part and every score is computed on the other only, before and
  after compensation, so the two are compared on the same trials;
* ``compensation.data=<corpus>`` (``conf/data/<corpus>.yaml``, e.g. ``nemo``): fitted on that
  corpus's labelled utterances, read through its loader and embedded into its own store with the
  same encoder; all speakers of ``data`` are tested.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.evaluation.compensation import build_compensation, check_disjoint, split_speakers
from deeptalk_ser.runs.common import embed_selected, prepare_data, scored_features
from deeptalk_ser.utils.errors import ConfigError

SAME = "same"


@dataclass
class Compensated:
    """The test side: its utterances, features before and after (``after`` is ``before`` with ``none``)."""
    utts: list[Utterance]
    before: np.ndarray
    after: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def compensation_settings(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.compensation`` as a plain dict (``method: none`` when the group is absent)."""
    node = cfg.get("compensation")
    return {"method": "none"} if node is None else OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def corpus_config(cfg: DictConfig, name: str) -> DictConfig:
    """``cfg`` with ``data`` replaced by ``conf/data/<name>.yaml``: the same encoder, caches and
    settings on another corpus."""
    root = Path(os.environ.get("PROJECT_ROOT") or Path(__file__).resolve().parents[3])
    path = root / "conf" / "data" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError("compensation.data", f"{SAME!r} or a corpus of conf/data, got {name!r} ({path} not found)")
    node = OmegaConf.load(path)
    with open_dict(node):
        node.pop("defaults", None)
    sub = cfg.copy()
    with open_dict(sub):
        sub.data = node
    return sub


def apply_compensation(cfg: DictConfig, utts: Sequence[Utterance], X: np.ndarray, out: Path) -> Compensated:
    """Fit ``cfg.compensation`` (see module docstring) and return the test side, before and after."""
    comp = compensation_settings(cfg)
    model = build_compensation(str(comp.get("method", "none")), k=int(comp.get("k", 2)),
                               n_components=comp.get("n_components"))
    if model is None:
        return Compensated(list(utts), X, X, {"method": "none"})
    source = str(comp.get("data", SAME))
    if source == SAME:
        fit_spk, test_spk = split_speakers([u.speaker for u in utts], float(comp.get("fit_fraction", 0.5)),
                                           int(comp.get("seed", 0)))
        fit_set = set(fit_spk)
        fit_rows = np.array([u.speaker in fit_set for u in utts])
        fit_utts, fit_X = [u for u, f in zip(utts, fit_rows) if f], X[fit_rows]
        test = [u for u, f in zip(utts, fit_rows) if not f]
        test_X = X[~fit_rows]
        check_disjoint([u.speaker for u in fit_utts], [u.speaker for u in test])
    else:
        if source == str(cfg.data.name):
            raise ConfigError("compensation.data", f"{source!r} is the test corpus: use {SAME!r} for a speaker-disjoint split")
        sub = corpus_config(cfg, source)
        other = prepare_data(sub)
        labelled = [u for u in other.utts if u.label is not None]
        if not labelled:
            raise ConfigError("compensation.data", f"{source} has no labelled utterance to learn emotion from")
        store, _, _, fit_utts = embed_selected(sub, other, labelled, out / "extract_summary_compensation.json")
        fit_X = scored_features(store, [u.id for u in fit_utts])
        test, test_X = list(utts), X
        if str(sub.data.loader.get("_target_")) == str(cfg.data.loader.get("_target_")):  # same people, same ids
            check_disjoint([u.speaker for u in fit_utts], [u.speaker for u in test])
    model.fit(fit_X, [u.speaker for u in fit_utts], [u.label for u in fit_utts])
    info = {**comp, "n_fit_utterances": len(fit_utts), "n_fit_speakers": len({u.speaker for u in fit_utts}),
            "n_test_speakers": len({u.speaker for u in test})}
    if hasattr(model, "explained_"):
        info["explained_fraction"] = model.explained_
    return Compensated(test, test_X, model.transform(test_X), info)
