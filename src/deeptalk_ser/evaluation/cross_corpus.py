"""Cross-corpus evaluation (``evaluate.py data=A test_data=B``): train on all of A, test on all of B.

Why a module of its own: a cross-corpus score is only meaningful if nothing of B leaks into what
is fitted and both sides are scored on the same classes. So

- each side comes through its own loader, manifest and embedding store (``test_data`` is a
  ``conf/data`` option under another key, see ``conf/test_data``);
- both sides keep only the task's fine classes that *both* have (:func:`shared_labels`); what the
  other side lacks is left out and counted per corpus;
- A and B become one fold (:func:`combine`): the classifier, its scaler, its tuning and every
  label-using statistic see A's rows only; label-free per-speaker statistics (features.per_speaker)
  come from each corpus's own utterances, as within a corpus;
- speakers are prefixed by their corpus (``emodb:03``) so that two corpora's ``03`` stay apart in
  the speaker bootstrap; two copies of one corpus that share speakers are refused
  (:func:`check_speakers`): that is a within-corpus question, answered by its protocol.

"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.evaluation.labels import EmotionLabels
from deeptalk_ser.evaluation.protocols import Fold
from deeptalk_ser.utils.errors import ConfigError

PROTOCOL = "cross_corpus"


def is_cross_corpus(cfg: DictConfig) -> bool:
    """True when ``test_data`` names another corpus or another copy (other loader options) than
    ``data``; ``test_data`` equal to ``data`` (a matrix's diagonal cell) is a within-corpus run."""
    test = cfg.get("test_data")
    if test is None:
        return False
    return (test.name != cfg.data.name
            or OmegaConf.to_container(test.loader, resolve=True) != OmegaConf.to_container(cfg.data.loader, resolve=True))


def check_names(cfg: DictConfig) -> None:
    """Refuse another copy of a corpus (other loader options, e.g. ``test_data.root=``) under the
    name of ``data``: the name is the cache folder, so both copies would overwrite one manifest and
    one embedding store in turn. Called before anything is prepared."""
    if is_cross_corpus(cfg) and str(cfg.test_data.name) == str(cfg.data.name):
        name = cfg.data.name
        raise ConfigError("test_data.name", f"test_data is another copy of {name} (other loader options) under the "
                                            f"same name, which is its cache folder: name it, e.g. test_data.name={name}_test")


def test_side_config(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``data`` replaced by ``test_data``: what prepares and embeds B with the same
    encoder, caches and settings as A."""
    sub = cfg.copy()
    with open_dict(sub):
        sub.data = cfg.test_data
    return sub


def same_corpus(cfg: DictConfig) -> bool:
    """Whether ``data`` and ``test_data`` are read by the same corpus loader (two copies of EmoDB,
    whatever their names): then the same speaker id is the same person."""
    return str(cfg.data.loader.get("_target_")) == str(cfg.test_data.loader.get("_target_"))


def check_speakers(same: bool, train_utts: Sequence[Utterance], test_utts: Sequence[Utterance], name: str) -> None:
    """Refuse two copies of one corpus (``same``) that share speakers; different corpora may reuse
    ids such as ``03``: they are different people, kept apart by the corpus prefix."""
    if not same:
        return
    shared = sorted({u.speaker for u in train_utts} & {u.speaker for u in test_utts})
    if shared:
        raise ConfigError("test_data", f"data and test_data are two copies of {name} sharing {len(shared)} speaker(s) "
                                       f"({', '.join(shared[:5])}{', ...' if len(shared) > 5 else ''}); within one "
                                       "corpus use its protocol (drop test_data)")


def shared_labels(labels: EmotionLabels, fine: dict[str, np.ndarray]) -> tuple[EmotionLabels, dict[str, dict[str, int]]]:
    """The task restricted to the fine classes every corpus of ``fine`` (name -> fine labels) has,
    and per corpus the utterances left out because another side lacks their class."""
    present = [set(np.asarray(f, dtype=object).tolist()) for f in fine.values()]
    keep = set.intersection(*present) if present else set()
    label_map = {k: v for k, v in labels.label_map.items() if v in keep}
    targets = {labels.coarse_map.get(f, f) for f in keep}
    classes = [c for c in labels.classes if c in targets]
    if len(classes) < 2:
        per_side = "; ".join(f"{name}: {', '.join(sorted(set(f.tolist()))) or 'none'}" for name, f in fine.items())
        raise ConfigError("test_data", f"task {labels.name} needs 2 classes both corpora have, they share "
                                       f"{classes or 'none'} (fine classes {per_side})")
    left = {name: dict(sorted(Counter(x for x in f.tolist() if x not in keep).items()))
            for name, f in fine.items()}
    restricted = EmotionLabels(labels.name, classes, label_map,
                               {k: v for k, v in labels.coarse_map.items() if k in keep})
    return restricted, {name: counts for name, counts in left.items() if counts}


def combine(train_name: str, train_utts: Sequence[Utterance], test_name: str, test_utts: Sequence[Utterance]
            ) -> tuple[list[Utterance], np.ndarray, Fold]:
    """One utterance list (A then B), its corpus-prefixed speakers and the single fold that
    trains on A's rows and tests on B's."""
    utts = [*train_utts, *test_utts]
    speakers = np.array([f"{train_name}:{u.speaker}" for u in train_utts]
                        + [f"{test_name}:{u.speaker}" for u in test_utts], dtype=object)
    n = len(train_utts)
    fold = Fold(f"{train_name}->{test_name}", np.arange(n), np.arange(n, len(utts)))
    return utts, speakers, fold
