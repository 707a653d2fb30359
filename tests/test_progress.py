"""Progress bars are on for a person at a terminal and quiet in logs, CI and on request."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from deeptalk_ser.utils import progress as pg
from e2e_utils import run_script, speech_emodb_tree, speech_kaldi_tree


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("env,tty,off", [({}, True, False), ({}, False, True), ({"CI": "true"}, True, True),
                                         ({"DEEPTALK_PROGRESS": "0"}, True, True),
                                         ({"DEEPTALK_PROGRESS": "1", "CI": "1"}, False, False)])
def test_progress_switch(monkeypatch: pytest.MonkeyPatch, env: dict, tty: bool, off: bool) -> None:
    for key in ("CI", "DEEPTALK_PROGRESS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(pg.sys, "stderr", Tty() if tty else io.StringIO())
    assert pg.progress_disabled() is off
    assert list(pg.progress(range(3), desc="x")) == [0, 1, 2]  # the items pass through either way


def test_short_runs_get_no_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPTALK_PROGRESS", "1")
    assert pg.progress(range(1), disable_below=2).disable
    assert not pg.progress(range(5), disable_below=2).disable


# --------------------------------------------------------------------------- entry scripts

QUIET = {"CI": "", "DEEPTALK_PROGRESS": ""}  # only "stderr is not a terminal" keeps the bars off
#: Any bar: tqdm redraws with \r, rich's and tqdm's rates read "12.3it/s" or "1.2s/utt".
BAR = re.compile(r"\r|\d(it|utt)/s|s/(it|utt)\b")
#: The stage's own bar, once forced: Lightning's (steps, on stdout) and extraction's (utterances, stderr).
STAGE_BAR = {"train.py": re.compile(r"Epoch \d.*\dit/s"), "extract.py": re.compile(r"extract\[deeptalk\].*\dutt/s")}


def _script_args(script: str, tmp_path: Path) -> list[str]:
    """A run of a few seconds: two training steps, or extraction of 20 EmoDB files."""
    if script == "train.py":
        corpus = speech_kaldi_tree(tmp_path / "speechocean762", n_speakers=6, n_utts=2)
        return ["data=speechocean762", f"data.root={corpus}", "training.speakers_per_batch=2",
                "training.utterances_per_speaker=2", "training.crop_frames=60", "training.batches_per_epoch=2",
                "training.val_speakers=2", "trainer.max_steps=2", "logger=csv", f"hydra.run.dir={tmp_path / 'run'}"]
    return ["encoder=deeptalk", f"data.root={speech_emodb_tree(tmp_path / 'emodb', speakers=('03', '08'))}"]


@pytest.mark.e2e
@pytest.mark.parametrize("forced", [False, pytest.param(True, marks=pytest.mark.slow)],  # forcing: test_progress_switch
                         ids=["redirected", "DEEPTALK_PROGRESS=1"])
@pytest.mark.parametrize("script", ["train.py", "extract.py"])
def test_entry_script_bars_follow_the_rule(tmp_path: Path, script: str, forced: bool) -> None:
    """Lightning's training bar and the extraction bar obey the rule too: nothing in the files an
    entry script's output is redirected to, the stage's bar when DEEPTALK_PROGRESS=1 asks."""
    env = {**QUIET, "DEEPTALK_PROGRESS": "1"} if forced else QUIET
    proc = run_script(script, *_script_args(script, tmp_path), tmp=tmp_path, env=env)
    output = proc.stdout + proc.stderr
    if forced:
        assert STAGE_BAR[script].search(output), f"{script} drew no bar with DEEPTALK_PROGRESS=1:\n{output[-2000:]}"
        return
    found = BAR.search(output)
    assert found is None, f"{script} drew a bar into its log: {output[max(0, found.start() - 200):found.end() + 50]!r}"
