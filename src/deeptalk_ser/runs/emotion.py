"""``evaluate.py task=er|ed``: emotion recognition / detection on utterance embeddings, fold by fold.

prepare manifest -> embeddings (reused store when manifest, encoder and windowing match) ->
task labels -> protocol folds (speaker-disjointness checked) -> classifier per fold ->
WA / UA / macro-F1 / per-class F1 / confusion per fold and pooled -> results.json, a
confusion PNG and the loggers.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.embedding.fusion import FusedEmbeddings
from deeptalk_ser.embedding.windowing import describe_windowing
from deeptalk_ser.evaluation.classifiers.fusion import check_fusable, with_blocks
from deeptalk_ser.evaluation.labels import EmotionLabels, count_labels, describe_counts
from deeptalk_ser.evaluation.heads import portable, save_head
from deeptalk_ser.evaluation.intervals import ci_metrics, interval_settings, speaker_bootstrap
from deeptalk_ser.evaluation.metrics import classification_metrics
from deeptalk_ser.evaluation.tuning import check_grid, tuned_fit
from deeptalk_ser.evaluation.normalization import check_mode, normalise_per_speaker
from deeptalk_ser.evaluation.protocols import check_disjoint, group_values, write_split_file
from deeptalk_ser.runs.common import embed_selected, finish_run, start_run
from deeptalk_ser.utils.errors import ConfigError, DataError
from deeptalk_ser.utils.io import write_text_atomic
from deeptalk_ser.utils.loggers import flatten_config
from deeptalk_ser.utils.progress import progress
from deeptalk_ser.utils.reporting import plot_confusion

log = logging.getLogger(__name__)


def run_folds(X: np.ndarray, fine: np.ndarray, labels: EmotionLabels, folds: list, make_classifier, speakers: np.ndarray,
              speaker_independent: bool, tune: dict[str, Any] | None = None
              ) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray, str]:
    """Train and test one classifier per fold; returns per-fold records and pooled labels. With
    ``tune`` (grid, folds, scoring) the classifier's parameters are chosen inside each training
    fold by speaker-grouped cross-validation (evaluation/tuning.py) before the test fold is seen."""
    y_task = labels.to_task_labels(fine)
    pooled_true, pooled_pred, fold_records, backend = [], [], [], "none"
    for fold in progress(folds, desc="folds", unit="fold"):
        shared = check_disjoint(fold, speakers, speaker_independent)
        clf = make_classifier()
        backend = clf.resolved_backend
        y_train = fine[fold.train] if clf.uses_fine_labels else y_task[fold.train]
        chosen: dict[str, Any] = {}
        if tune:
            clf, info = tuned_fit(make_classifier, tune["grid"], X[fold.train], y_train, speakers[fold.train],
                                  inner_folds=tune["folds"], scoring=tune["scoring"])
            chosen = {"tuned": {k: info[k] for k in ("best_params", "inner_score", "inner_folds")}}
        else:
            clf.fit(X[fold.train], y_train)
        pred = clf.predict(X[fold.test])
        if clf.uses_fine_labels:
            pred = labels.to_task_labels(pred)
        true = y_task[fold.test]
        m = classification_metrics(true, pred, labels.classes)
        fold_records.append({"name": fold.name, "n_train": int(len(fold.train)), "n_test": int(len(fold.test)),
                             "speakers_shared": len(shared), **chosen, **m})
        pooled_true.append(true)
        pooled_pred.append(pred)
        log.info("fold %s: n_test=%d WA=%.4f UA=%.4f", fold.name, len(fold.test), m["wa"], m["ua"])
    return fold_records, np.concatenate(pooled_true), np.concatenate(pooled_pred), backend


def classifier_and_tuning(cfg: DictConfig) -> tuple[Any, dict[str, Any] | None]:
    """The classifier factory from ``cfg.classifier`` and, with ``tuning.enabled``, the nested
    search settings of ``cfg.tuning`` (grid checked against the classifier's parameters now)."""
    make_classifier = instantiate(cfg.classifier, _partial_=True, _convert_="all")
    if not cfg.tuning.enabled:
        return make_classifier, None
    grid = OmegaConf.to_container(cfg.tuning.grid, resolve=True)
    check_grid(grid, list(make_classifier().get_params(deep=True)))  # type: ignore[arg-type]
    return make_classifier, {"grid": grid, "folds": int(cfg.tuning.folds), "scoring": str(cfg.tuning.scoring)}


def save_full_head(cfg: DictConfig, make_classifier, X: np.ndarray, fine: np.ndarray, labels: EmotionLabels,
                   store, out) -> Any:
    """``save_model=true``: the head refitted on all of the run's data, with what predict.py
    needs to embed new audio the same way (encoder config, windowing, task classes). Always the
    scikit-learn backend: the one whose fitted model is portable and saved without pickle."""
    clf = portable(make_classifier)
    clf.fit(X, fine if clf.uses_fine_labels else labels.to_task_labels(fine))
    meta = {"task": labels.name, "classes": list(labels.classes), "labels": dataclasses.asdict(labels),
            "uses_fine_labels": bool(clf.uses_fine_labels), "n_train": int(len(X)), "data": cfg.data.name,
            "encoder": OmegaConf.to_container(cfg.encoder, resolve=True), "store_key": store.meta.get("key", {})}
    path = save_head(clf, out, meta)
    print(f"head fitted on all {len(X)} utterances saved -> {path} (python predict.py model={path} inputs=[...])")
    return path


def check_task_classes(cfg: DictConfig, labels: EmotionLabels, utts: list[Utterance], fine: np.ndarray,
                       extraction: Path | None = None) -> list[str]:
    """Refuse a task with a class no utterance has: its UA would be the mean over the other
    classes under the task's name. Checked on the prepared data, then on what got an embedding
    (``extraction``: the summary naming what was dropped). Returns what the score must be read with
    (ED scored without some of its fine classes, e.g. emotional without sad)."""
    missing = labels.missing_classes(fine)
    if not missing:
        return labels.coverage_warnings(fine)
    what = (f"task {labels.name} class{'es' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"{'have' if len(missing) > 1 else 'has'} no {cfg.data.name} utterance")
    present = describe_counts(count_labels(u.label for u in utts)) or "none"
    if extraction is not None:
        raise DataError(extraction, f"{what} left after extraction (labels embedded: {present}); the others were "
                                    "dropped short or skipped, see this summary")
    if "label_map" in cfg.data.get("loader", {}):
        raise ConfigError("data.loader.label_map", f"{what} (labels present: {present}); name the label that means "
                                                   f"{missing[0]} with +data.loader.label_map.<label>={missing[0]}")
    raise ConfigError("task", f"{what} (labels present: {present}; task labels: {sorted(labels.label_map)})")


def check_first_class(clf: Any, labels: EmotionLabels, fine: np.ndarray) -> None:
    """A head trained on fine labels around one class (Sad-First: ``first_class``) cannot fit
    without it; refused before the extraction, not in the first fold."""
    first = getattr(clf, "first_class", None)
    if getattr(clf, "uses_fine_labels", False) and first is not None and first not in set(fine.tolist()):
        raise ConfigError("classifier.first_class", f"the {getattr(clf, 'name', type(clf).__name__)} head trains its "
                                                    f"first stage on {first!r}, which no utterance of task {labels.name} "
                                                    f"has (fine labels present: {describe_counts(count_labels(fine))}); "
                                                    "use classifier=svm or give it such utterances")


def run(cfg: DictConfig) -> dict[str, Any]:
    """``evaluate.py task=er|ed``: the results dict, also written to ``results.json``."""
    t0 = time.perf_counter()
    out, data = start_run(cfg)
    labels: EmotionLabels = instantiate(cfg.task.labels, _convert_="all")
    candidates, candidate_labels = labels.select(data.utts)  # only the task's utterances are embedded
    check_task_classes(cfg, labels, data.utts, candidate_labels)
    left_out = labels.left_out(data.utts)
    if left_out:
        log.warning("left out %d utterance(s) with labels not in task %s: %s", sum(left_out.values()), labels.name,
                    describe_counts(left_out))
    # refuse impossible classifier / protocol settings now, not after the whole extraction
    make_classifier, tune = classifier_and_tuning(cfg)
    probe = make_classifier()
    probe.check_params()
    check_first_class(probe, labels, candidate_labels)
    per_speaker = check_mode(cfg.get("features", {}).get("per_speaker", "none"))
    if "parts" in cfg.encoder:  # encoder=fusion: the head scales each block on its training fold
        check_fusable(probe)
    if cfg.get("save_model") and per_speaker != "none":
        raise ConfigError("save_model", "a head trained on per-speaker normalised features needs each new "
                                        "speaker's other utterances; save it with features.per_speaker=none")
    protocol = instantiate(cfg.protocol, _convert_="all")
    protocol.folds(candidates, candidate_labels)
    store, extraction, encoder_name, embedded = embed_selected(cfg, data, candidates, out / "extract_summary.json")
    utts, fine = labels.select(embedded)
    warnings = check_task_classes(cfg, labels, embedded, fine, extraction=out / "extract_summary.json")
    for w in warnings:
        log.warning(w)
    X = normalise_per_speaker(store.select([u.id for u in utts]), group_values(utts, "speaker"), per_speaker)
    if isinstance(store, FusedEmbeddings):
        make_classifier = with_blocks(make_classifier, store.blocks)
    folds = protocol.folds(utts, fine)
    split_hash = write_split_file(out / "splits.json", protocol, folds, utts)  # the exact folds, hashed
    speakers = group_values(utts, "speaker")
    probe = make_classifier()
    if hasattr(probe, "check_fits"):  # a fit that would not fit in memory is refused before the first fold
        probe.check_fits(max((len(f.train) for f in folds), default=0), X.shape[1])
    fold_records, y_true, y_pred, backend = run_folds(X, fine, labels, folds, make_classifier, speakers,
                                                      protocol.speaker_independent, tune)

    pooled = classification_metrics(y_true, y_pred, labels.classes)
    # speaker-level bootstrap intervals of the pooled scores (evaluation/intervals.py); the pooled
    # labels are the test folds' in fold order, so are their speakers
    ci_cfg = interval_settings(cfg)
    pooled_speakers = np.concatenate([speakers[f.test] for f in folds]) if folds else np.array([], dtype=object)
    ci95 = speaker_bootstrap(y_true, y_pred, pooled_speakers, labels.classes, ci_cfg["n_resamples"], ci_cfg["seed"],
                             ci_cfg["level"])
    write_predictions(out / "predictions.csv", utts, folds, y_true, y_pred)
    ua_folds = np.array([f["ua"] for f in fold_records])
    wa_folds = np.array([f["wa"] for f in fold_records])
    results: dict[str, Any] = {
        "task": labels.name, "data": cfg.data.name, "protocol": protocol.name, "encoder": encoder_name,
        "windowing": describe_windowing(store.meta.get("key", {}).get("windowing")),
        "classifier": cfg.classifier.get("name", "classifier"), "backend": backend,
        "n_utterances": len(utts), "n_speakers": len(set(speakers)), "n_folds": len(folds), "classes": labels.classes,
        "class_counts": {c: int(np.sum(labels.to_task_labels(fine) == c)) for c in labels.classes},
        **{k: pooled[k] for k in ("wa", "ua", "macro_f1", "f1_per_class", "recall_per_class", "confusion")},
        "ci95": ci95, "ci": ci_cfg,
        "wa_fold_mean": float(wa_folds.mean()), "wa_fold_std": float(wa_folds.std()),
        "ua_fold_mean": float(np.nanmean(ua_folds)), "ua_fold_std": float(np.nanstd(ua_folds)),
        "speaker_independent": bool(protocol.speaker_independent),
        "split_hash": split_hash, "split_file": "splits.json", "predictions_file": "predictions.csv",
        "protocol_config": OmegaConf.to_container(cfg.protocol, resolve=True),
        "classifier_config": OmegaConf.to_container(cfg.classifier, resolve=True),
        "encoder_config": store.meta.get("key", {}),
        "per_speaker_normalisation": per_speaker,
        "tuning": tune,
        "extraction": extraction,
        "prepare_skipped": data.report.skipped,
        "labels_left_out": left_out,  # label -> utterances, most first: what the task did not use
        "warnings": warnings,         # what the score must be read with (ED scored without a fine class)
        "folds": fold_records,
        "wall_seconds": time.perf_counter() - t0,
    }
    if not protocol.speaker_independent:
        results["warning"] = "speaker-DEPENDENT protocol: train and test may share speakers"
    if cfg.get("save_model"):
        results["model"] = str(save_full_head(cfg, make_classifier, X, fine, labels, store, out / "model"))
    png = plot_confusion(pooled["confusion"], labels.classes, out / "confusion.png",
                         f"{cfg.data.name} {labels.name} {encoder_name}+{results['classifier']} ({protocol.name}) UA={pooled['ua']:.3f}")
    metrics = {f"test/{k}": results[k] for k in ("wa", "ua", "macro_f1", "ua_fold_mean", "ua_fold_std")}
    metrics.update({f"test/f1_{c}": v for c, v in pooled["f1_per_class"].items()})
    metrics.update(ci_metrics(ci95))
    return finish_run(cfg, out, results, metrics, {"test/confusion": png}, tables={"test/folds": fold_table(fold_records)},
                      confusion={"key": "test/confusion_matrix", "matrix": pooled["confusion"], "classes": labels.classes,
                                 "title": f"{cfg.data.name} {labels.name} {results['classifier']} (pooled over folds)"})


def write_predictions(path: Path, utts: list[Utterance], folds: list, y_true: np.ndarray, y_pred: np.ndarray) -> None:
    """One row per scored utterance (id, speaker, fold, true, predicted), in the pooled order: what
    a paired comparison of two runs, or any later analysis, needs without re-running the head."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "speaker", "fold", "true", "pred"])
    rows = ((utts[i], f.name) for f in folds for i in f.test)
    for (u, fold), t, p in zip(rows, y_true, y_pred, strict=True):
        w.writerow([u.id, u.speaker, fold, t, p])
    write_text_atomic(path, buf.getvalue())


def fold_table(fold_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per fold for the W&B table: per-class scores as their own columns (``f1_per_class.sad``)."""
    return [flatten_config({k: v for k, v in f.items() if k != "confusion"}) for f in fold_records]
