"""Helpers for end-to-end tests: run an entry script in a subprocess on generated corpora."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from conftest import speech_like
from markers import PROJECT_ROOT


def run_script(script: str, *overrides: str, tmp: Path, check: bool = True, timeout: int = 300,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``env`` entries replace the defaults (e.g. ``{"HYDRA_FULL_ERROR": "0"}`` for the user's view)."""
    env = {**os.environ, "DEEPTALK_CACHE_DIR": str(tmp / "cache"), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "HYDRA_FULL_ERROR": "1", "PYTHONWARNINGS": "ignore", **(env or {})}
    flags = [o for o in overrides if o.startswith("-")]  # e.g. -m must precede the overrides
    rest = [o for o in overrides if not o.startswith("-")]
    cmd = [sys.executable, str(PROJECT_ROOT / script), *flags, f"paths.log_dir={tmp / 'outputs'}", *rest]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def speech_emodb_tree(root: Path, speakers=("03", "08", "09", "10"), texts=("a01", "a02", "a04"),
                      letters=("W", "T", "F", "N", "L"), seconds: float = 1.6, sr: int = 16000) -> Path:
    """EmoDB layout with speech-like audio that survives VAD. Emotion moves f0 in steps of 40 Hz,
    the speaker by at most 4 Hz per speaker: emotions differ the same way for every speaker, so a
    speaker-independent head must score well above chance (a test fails on a collapse)."""
    for s_i, spk in enumerate(speakers):
        for t_i, text in enumerate(texts):
            for e_i, letter in enumerate(letters):
                y = speech_like(seconds + 0.1 * t_i, sr, f0=100.0 + 4 * s_i + 40 * e_i)
                p = root / "wav" / f"{spk}{text}{letter}a.wav"
                p.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(p), y, sr)
    return root


def speech_kaldi_tree(root: Path, n_speakers: int = 8, n_utts: int = 4, sr: int = 8000, seconds: float = 2.0,
                      links: int = 1) -> Path:
    """A Kaldi-layout speaker corpus (train/ and test/ halves) of speech-like FLAC files of
    ``seconds`` to ``seconds + 0.5`` s; each file is listed ``links`` times (hard links under new
    utterance ids: hours of audio to process at no cost to generate)."""
    rng = np.random.default_rng(0)
    for subset, spk_range in (("train", range(n_speakers)), ("test", range(n_speakers, 2 * n_speakers))):
        d = root / subset
        d.mkdir(parents=True, exist_ok=True)
        scp, u2s = [], []
        for s in spk_range:
            spk = f"{s:04d}"
            for u in range(n_utts):
                utt = f"{spk}{u:05d}"
                rel = f"WAVE/SPEAKER{spk}/{utt}.flac"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                y = speech_like(seconds + 0.5 * rng.random(), sr, f0=90.0 + 12 * s)
                sf.write(str(root / rel), y, sr)
                for c in range(links):
                    uid, path = (utt, rel) if c == 0 else (f"{utt}-{c:04d}", rel.replace(".flac", f"-{c:04d}.flac"))
                    if c:
                        os.link(root / rel, root / path)
                    scp.append(f"{uid} {path}\n")
                    u2s.append(f"{uid} {spk}\n")
        (d / "wav.scp").write_text("".join(scp))
        (d / "utt2spk").write_text("".join(u2s))
    return root
