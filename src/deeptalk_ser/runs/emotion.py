"""``evaluate.py task=er|ed``: emotion recognition / detection on utterance embeddings, fold by fold
(or ``test_data=B``: trained on all of one corpus, tested on all of another).

prepare manifest -> embeddings (reused store when manifest, encoder and windowing match) ->
task labels -> protocol folds (speaker-disjointness checked) -> classifier per fold ->
WA / UA / macro-F1 / per-class F1 / confusion per fold and pooled -> results.json, a
confusion PNG and the loggers.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.embedding.fusion import FusedEmbeddings
from deeptalk_ser.embedding.windowing import describe_windowing
from deeptalk_ser.evaluation.classifiers.fusion import check_fusable, with_blocks
from deeptalk_ser.evaluation.confounds import assess_run
from deeptalk_ser.evaluation.cross_corpus import (PROTOCOL, check_names, check_speakers, combine, is_cross_corpus, same_corpus,
                                                  shared_labels, test_side_config)
from deeptalk_ser.evaluation.labels import EmotionLabels, count_labels, describe_counts
from deeptalk_ser.evaluation.heads import portable, save_head
from deeptalk_ser.evaluation.intervals import ci_metrics, interval_settings, speaker_bootstrap
from deeptalk_ser.evaluation.metrics import classification_metrics
from deeptalk_ser.evaluation.tuning import check_grid, resolve_grid, tuned_fit
from deeptalk_ser.evaluation.normalization import check_mode, normalise_per_speaker
from deeptalk_ser.evaluation.protocols import Protocol, check_disjoint, group_values, write_split_file
from deeptalk_ser.runs.common import embed_selected, finish_run, prepare_data, start_run
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
    probe = make_classifier()
    grid = resolve_grid(OmegaConf.to_container(cfg.tuning.grid, resolve=True) if cfg.tuning.grid is not None else None,
                        probe)  # type: ignore[arg-type]
    check_grid(grid, list(probe.get_params(deep=True)))
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


@dataclass
class Head:
    """What trains on every fold, checked before any extraction: the classifier factory, the nested
    tuning settings (None: fixed parameters) and the per-speaker normalisation mode."""
    make_classifier: Any
    tune: dict[str, Any] | None
    per_speaker: str


@dataclass
class TaskPart:
    """One corpus's share of a task after extraction (or two corpora's, joined for a cross-corpus
    run): the embedded task utterances, their fine labels, their features and what was said about them."""
    utts: list[Utterance]
    fine: np.ndarray
    X: np.ndarray
    store: Any
    encoder_name: str
    extraction: dict[str, Any]
    warnings: list[str]


def task_candidates(labels: EmotionLabels, data) -> tuple[list[Utterance], np.ndarray, dict[str, int]]:
    """The task's utterances of the prepared data (only those are embedded), their fine labels and
    the labels the task leaves out (logged, and listed in results)."""
    candidates, fine = labels.select(data.utts)
    left_out = labels.left_out(data.utts)
    if left_out:
        log.warning("left out %d utterance(s) with labels not in task %s: %s", sum(left_out.values()), labels.name,
                    describe_counts(left_out))
    return candidates, fine, left_out


def check_head(cfg: DictConfig, labels: EmotionLabels, fine: np.ndarray) -> Head:
    """Refuse impossible classifier, tuning and normalisation settings now, not after the whole extraction."""
    make_classifier, tune = classifier_and_tuning(cfg)
    probe = make_classifier()
    probe.check_params()
    check_first_class(probe, labels, fine)
    per_speaker = check_mode(cfg.get("features", {}).get("per_speaker", "none"))
    if "parts" in cfg.encoder:  # encoder=fusion: the head scales each block on its training fold
        check_fusable(probe)
    if cfg.get("save_model") and per_speaker != "none":
        raise ConfigError("save_model", "a head trained on per-speaker normalised features needs each new "
                                        "speaker's other utterances; save it with features.per_speaker=none")
    return Head(make_classifier, tune, per_speaker)


def embed_task(cfg: DictConfig, data, labels: EmotionLabels, candidates: list[Utterance], per_speaker: str,
               summary_path: Path) -> TaskPart:
    """Embed (or reuse) the candidates of one corpus; features normalised per speaker on that
    corpus's own unlabelled utterances (evaluation/normalization.py)."""
    store, extraction, encoder_name, embedded = embed_selected(cfg, data, candidates, summary_path)
    utts, fine = labels.select(embedded)
    warnings = check_task_classes(cfg, labels, embedded, fine, extraction=summary_path)
    for w in warnings:
        log.warning(w)
    X = normalise_per_speaker(store.select([u.id for u in utts]), group_values(utts, "speaker"), per_speaker)
    return TaskPart(utts, fine, X, store, encoder_name, extraction, warnings)


def run(cfg: DictConfig) -> dict[str, Any]:
    """``evaluate.py task=er|ed``: the results dict, also written to ``results.json``. With a
    ``test_data`` other than ``data``: the cross-corpus run (:func:`run_cross_corpus`)."""
    if is_cross_corpus(cfg):
        return run_cross_corpus(cfg)
    t0 = time.perf_counter()
    out, data = start_run(cfg, test_data=True)
    labels: EmotionLabels = instantiate(cfg.task.labels, _convert_="all")
    candidates, candidate_labels, left_out = task_candidates(labels, data)
    check_task_classes(cfg, labels, data.utts, candidate_labels)
    head = check_head(cfg, labels, candidate_labels)
    protocol = instantiate(cfg.protocol, _convert_="all")
    protocol.use_manifest(data.utts)  # fold files list utterances of every class by id
    protocol.folds(candidates, candidate_labels)  # an impossible protocol is refused before the extraction
    part = embed_task(cfg, data, labels, candidates, head.per_speaker, out / "extract_summary.json")
    folds = protocol.folds(part.utts, part.fine)
    setup = {"data": cfg.data.name, "train_data": cfg.data.name, "test_data": cfg.data.name, "protocol": protocol.name,
             "speaker_independent": bool(protocol.speaker_independent),
             "split_hash": write_split_file(out / "splits.json", protocol, folds, part.utts),  # the exact folds, hashed
             "protocol_config": OmegaConf.to_container(cfg.protocol, resolve=True),
             "prepare_skipped": data.report.skipped, "labels_left_out": left_out}
    return score(cfg, out, t0, labels, head, part, folds, group_values(part.utts, "speaker"), setup)


def run_cross_corpus(cfg: DictConfig) -> dict[str, Any]:
    """``evaluate.py data=A test_data=B``: the head trained on all of A, tested on all of B, on the
    task classes both have (evaluation/cross_corpus.py); intervals resample B's speakers."""
    t0 = time.perf_counter()
    check_names(cfg)
    out, data = start_run(cfg, test_data=True)
    test_cfg = test_side_config(cfg)
    test = prepare_data(test_cfg)
    a, b = str(cfg.data.name), str(cfg.test_data.name)
    check_speakers(same_corpus(cfg), data.utts, test.utts, a)
    labels: EmotionLabels = instantiate(cfg.task.labels, _convert_="all")
    cand_a, fine_a, left_a = task_candidates(labels, data)
    cand_b, fine_b, left_b = task_candidates(labels, test)
    labels, unshared = shared_labels(labels, {f"data={a}": fine_a, f"test_data={b}": fine_b})
    (cand_a, fine_a), (cand_b, _) = labels.select(cand_a), labels.select(cand_b)
    head = check_head(cfg, labels, fine_a)
    part_a = embed_task(cfg, data, labels, cand_a, head.per_speaker, out / "extract_summary.json")
    part_b = embed_task(test_cfg, test, labels, cand_b, head.per_speaker, out / "extract_summary_test.json")
    utts, speakers, fold = combine(a, part_a.utts, b, part_b.utts)
    part = TaskPart(utts, np.concatenate([part_a.fine, part_b.fine]), np.concatenate([part_a.X, part_b.X]),
                    part_a.store, part_a.encoder_name, part_a.extraction, part_a.warnings + part_b.warnings)
    setup = {"data": f"{a}->{b}", "train_data": a, "test_data": b, "protocol": PROTOCOL, "speaker_independent": True,
             "split_hash": write_split_file(out / "splits.json", Protocol(name=PROTOCOL), [fold], utts),
             "protocol_config": {"name": PROTOCOL, "train_data": a, "test_data": b},
             "prepare_skipped": data.report.skipped, "labels_left_out": left_a,
             "test_prepare_skipped": test.report.skipped, "test_labels_left_out": left_b,
             "classes_left_out": unshared,  # corpus -> fine class -> utterances the other corpus has no class for
             "n_train": len(part_a.utts), "n_test": len(part_b.utts), "test_extraction": part_b.extraction}
    return score(cfg, out, t0, labels, head, part, [fold], speakers, setup, fit_rows=fold.train)


def score(cfg: DictConfig, out: Path, t0: float, labels: EmotionLabels, head: Head, part: TaskPart, folds: list,
          speakers: np.ndarray, setup: dict[str, Any], fit_rows: np.ndarray | None = None) -> dict[str, Any]:
    """Run the folds, then report them: pooled scores with speaker-bootstrap intervals over the
    test speakers, predictions.csv, results.json, the confusion PNG, the loggers and (``save_model``)
    the head refitted on ``fit_rows`` (all rows when None)."""
    make_classifier = head.make_classifier
    if isinstance(part.store, FusedEmbeddings):
        make_classifier = with_blocks(make_classifier, part.store.blocks)
    probe = make_classifier()
    if hasattr(probe, "check_fits"):  # a fit that would not fit in memory is refused before the first fold
        probe.check_fits(max((len(f.train) for f in folds), default=0), part.X.shape[1])
    fold_records, y_true, y_pred, backend = run_folds(part.X, part.fine, labels, folds, make_classifier, speakers,
                                                      setup["speaker_independent"], head.tune)
    pooled = classification_metrics(y_true, y_pred, labels.classes)
    # speaker-level bootstrap intervals of the pooled scores (evaluation/intervals.py); the pooled
    # labels are the test folds' in fold order, so are their speakers
    ci_cfg = interval_settings(cfg)
    pooled_speakers = np.concatenate([speakers[f.test] for f in folds]) if folds else np.array([], dtype=object)
    ci95 = speaker_bootstrap(y_true, y_pred, pooled_speakers, labels.classes, ci_cfg["n_resamples"], ci_cfg["seed"],
                             ci_cfg["level"])
    write_predictions(out / "predictions.csv", part.utts, folds, y_true, y_pred)
    results = results_record(cfg, t0, labels, head, part, speakers, fold_records, pooled, backend, setup,
                             {"ci95": ci95, "ci": ci_cfg})
    structure, flags = assess_run(speakers, labels.to_task_labels(part.fine), head.per_speaker, y_true, y_pred,
                                  fold_records, ci95, labels.classes)  # evaluation/confounds.py
    if any(f.startswith("degenerate run") for f in flags) and cfg.classifier.get("standardize") is False:
        flags.append("an RBF kernel on unscaled features can vanish between every pair of utterances: try "
                     "classifier.standardize=true classifier.gamma=scale"
                     + (" (experiment=egemaps_baseline does that for eGeMAPS)" if part.encoder_name == "egemaps" else ""))
    results.update(speaker_labels=structure, warnings=[*results["warnings"], *flags])
    if cfg.get("save_model"):
        rows = np.arange(len(part.utts)) if fit_rows is None else fit_rows
        results["model"] = str(save_full_head(cfg, make_classifier, part.X[rows], part.fine[rows], labels, part.store,
                                              out / "model"))
    return publish(cfg, out, results, pooled, labels)


def results_record(cfg: DictConfig, t0: float, labels: EmotionLabels, head: Head, part: TaskPart, speakers: np.ndarray,
                   fold_records: list[dict[str, Any]], pooled: dict[str, Any], backend: str, setup: dict[str, Any],
                   intervals: dict[str, Any]) -> dict[str, Any]:
    """The ``results.json`` dict of a run (what ``setup`` says about the data and split, then the scores)."""
    ua_folds = np.array([f["ua"] for f in fold_records])
    wa_folds = np.array([f["wa"] for f in fold_records])
    results: dict[str, Any] = {
        "task": labels.name, "data": setup["data"], "train_data": setup["train_data"], "test_data": setup["test_data"],
        "protocol": setup["protocol"], "encoder": part.encoder_name,
        "windowing": describe_windowing(part.store.meta.get("key", {}).get("windowing")),
        "classifier": cfg.classifier.get("name", "classifier"), "backend": backend,
        "n_utterances": len(part.utts), "n_speakers": len(set(speakers)), "n_folds": len(fold_records),
        "classes": labels.classes,
        "class_counts": {c: int(np.sum(labels.to_task_labels(part.fine) == c)) for c in labels.classes},
        **{k: pooled[k] for k in ("wa", "ua", "macro_f1", "f1_per_class", "recall_per_class", "confusion")},
        **intervals,
        "wa_fold_mean": float(wa_folds.mean()), "wa_fold_std": float(wa_folds.std()),
        "ua_fold_mean": float(np.nanmean(ua_folds)), "ua_fold_std": float(np.nanstd(ua_folds)),
        "split_file": "splits.json", "predictions_file": "predictions.csv",
        **{k: v for k, v in setup.items() if k not in ("data", "train_data", "test_data", "protocol")},
        "classifier_config": OmegaConf.to_container(cfg.classifier, resolve=True),
        "encoder_config": part.store.meta.get("key", {}),
        "per_speaker_normalisation": head.per_speaker,
        "tuning": head.tune,
        "extraction": part.extraction,
        "warnings": part.warnings,  # what the score must be read with (ED scored without a fine class)
        "folds": fold_records,
        "wall_seconds": time.perf_counter() - t0,
    }
    if not setup["speaker_independent"]:
        results["warning"] = "speaker-DEPENDENT protocol: train and test may share speakers"
    return results


def publish(cfg: DictConfig, out: Path, results: dict[str, Any], pooled: dict[str, Any],
            labels: EmotionLabels) -> dict[str, Any]:
    """The confusion PNG, then results.json, metrics, the fold table and the confusion plot to the loggers."""
    title = f"{results['data']} {labels.name} {results['encoder']}+{results['classifier']} ({results['protocol']})"
    png = plot_confusion(pooled["confusion"], labels.classes, out / "confusion.png", f"{title} UA={pooled['ua']:.3f}")
    metrics = {f"test/{k}": results[k] for k in ("wa", "ua", "macro_f1", "ua_fold_mean", "ua_fold_std")}
    metrics.update({f"test/f1_{c}": v for c, v in pooled["f1_per_class"].items()})
    metrics.update(ci_metrics(results["ci95"]))
    return finish_run(cfg, out, results, metrics, {"test/confusion": png},
                      tables={"test/folds": fold_table(results["folds"])},
                      confusion={"key": "test/confusion_matrix", "matrix": pooled["confusion"], "classes": labels.classes,
                                 "title": f"{title} (pooled over folds)"})


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
