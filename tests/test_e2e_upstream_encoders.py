"""End to end: evaluate.py / extract.py with encoder=onnx_speaker and encoder=ssl on the EmoDB
fixture corpus, with tiny models saved here (the weights of published models are not on this
machine); a layer sweep after one layer=all extraction extracts nothing."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from e2e_utils import read_json, run_script, speech_emodb_tree
from upstream_models import TinySpeakerNet, export_tiny_onnx, save_tiny_ssl

pytestmark = pytest.mark.e2e
N_SCORED = 4 * 3 * 4  # speakers x texts x the four ER emotions (boredom left out)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_emodb_tree(tmp_path_factory.mktemp("corpus") / "emodb")


def check_results(run: Path, encoder: str) -> dict:
    res = read_json(run / "results.json")
    assert (res["encoder"], res["task"], res["n_folds"], res["n_utterances"]) == (encoder, "er", 4, N_SCORED)
    assert sum(map(sum, res["confusion"])) == N_SCORED and 0.0 <= res["ua"] <= 1.0
    return res


def test_evaluate_onnx_speaker(corpus: Path, tmp_path: Path) -> None:
    model, _ = export_tiny_onnx(tmp_path / "tiny.onnx")
    run = tmp_path / "run"
    run_script("evaluate.py", "encoder=onnx_speaker", f"encoder.model={model}", f"data.root={corpus}",
               f"hydra.run.dir={run}", "logger=none", "save_model=true", tmp=tmp_path)
    res = check_results(run, "onnx_speaker")
    assert res["encoder_config"]["encoder"]["model_checksum"]
    assert read_json(run / "extract_summary.json")["n_embedded"] == len(list(corpus.rglob("*.wav"))) - 12
    # the saved head predicts with the same file; a replaced file under the same path is refused
    wav = corpus / "wav" / "03a01Wa.wav"
    run_script("predict.py", f"model={run / 'model'}", f"inputs=[{wav}]", f"hydra.run.dir={tmp_path / 'p1'}",
               tmp=tmp_path)
    assert list(csv.DictReader((tmp_path / "p1" / "predictions.csv").open()))[0]["label"]
    other = TinySpeakerNet()
    with torch.no_grad():
        other.out.weight.mul_(-1.0)
    export_tiny_onnx(model, other)
    proc = run_script("predict.py", f"model={run / 'model'}", f"inputs=[{wav}]", f"hydra.run.dir={tmp_path / 'p2'}",
                      tmp=tmp_path, check=False, env={"HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 1, (proc.stdout[-2000:], proc.stderr[-2000:])
    line = next(ln for ln in proc.stderr.splitlines() if ": error: " in ln)
    assert "head.json" in line and "weights changed" in line and "Traceback" not in proc.stderr


def evaluate_ssl_layer1(corpus: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(model folder, run folder) of ``evaluate.py encoder=ssl encoder.layer=1`` on a fresh cache."""
    model = save_tiny_ssl(tmp_path / "wavlm")
    run = tmp_path / "run"
    run_script("evaluate.py", "encoder=ssl", f"encoder.model={model}", "encoder.layer=1", f"data.root={corpus}",
               f"hydra.run.dir={run}", "logger=none", tmp=tmp_path)
    check_results(run, "ssl")
    assert read_json(run / "extract_summary.json")["n_embedded"] == N_SCORED
    return model, run


def test_evaluate_ssl_layer(corpus: Path, tmp_path: Path) -> None:
    evaluate_ssl_layer1(corpus, tmp_path)


@pytest.mark.slow  # five entry-script runs (about 90 s on 2 cores); tests/test_upstream_encoders.py checks the same in-process
def test_layer_all_then_sweep_extracts_nothing(corpus: Path, tmp_path: Path) -> None:
    model, run = evaluate_ssl_layer1(corpus, tmp_path)
    # every layer stored once; then a sweep over three layers extracts nothing
    run_script("extract.py", "encoder=ssl", f"encoder.model={model}", "encoder.layer=all", f"data.root={corpus}",
               f"hydra.run.dir={tmp_path / 'extract'}", tmp=tmp_path)
    sweep = tmp_path / "sweep"
    run_script("evaluate.py", "-m", "encoder=ssl", f"encoder.model={model}", "encoder.layer=0,1,2",
               f"data.root={corpus}", "logger=none", f"hydra.sweep.dir={sweep}", tmp=tmp_path)
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert len(rows) == 3
    layer_store = set()
    for r in rows:
        summary = read_json(sweep / r["run"] / "extract_summary.json")
        assert summary["n_embedded"] == 0 and summary["n_reused"] == N_SCORED
        layer_store.add(summary["read_from_layer_store"])
        check_results(sweep / r["run"], "ssl")
    assert len(layer_store) == 1
    # layer 1 read from the layer=all store scores exactly as the layer=1 store did
    from_sweep = [read_json(sweep / r["run"] / "results.json") for r in rows]
    layer1 = next(res for res in from_sweep if res["encoder_config"]["encoder"]["layer"] == 1)
    assert layer1["ua"] == pytest.approx(read_json(run / "results.json")["ua"])
