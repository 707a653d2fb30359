"""Utterance embeddings from a manifest: load -> front end -> windows -> mean, into a store.

Deterministic (no augmentation, no shuffling). Audio loading and the front end run in
DataLoader workers; the encoder runs in the main process. Utterances shorter than one window
(after the front end, e.g. VAD) are dropped and counted; unreadable files either stop the run
(``on_error=raise``) or are skipped and listed (``on_error=skip``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from deeptalk_ser.data.audio.frontend import AudioFrontend
from deeptalk_ser.data.audio.io import load_audio
from deeptalk_ser.embedding.encoders.base import SpeakerEncoder
from deeptalk_ser.utils.errors import AudioError
from deeptalk_ser.utils.io import file_stat, stable_hash, write_json_atomic
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.embedding.store import EmbeddingStore
from deeptalk_ser.embedding.windowing import Windowing, average_windows

log = logging.getLogger(__name__)


class FrontendDataset(Dataset):
    """Yields (index, conditioned waveform or the AudioError) per manifest utterance."""

    def __init__(self, utts: Sequence[Utterance], frontend: AudioFrontend) -> None:
        self.utts, self.frontend = list(utts), frontend

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | AudioError, float]:
        u = self.utts[i]
        try:
            frames = round(u.duration * u.sample_rate) if u.duration and u.sample_rate else None
            wav, sr = load_audio(u.path, expected_frames=frames)
            return i, self.frontend(wav, sr), len(wav) / sr
        except AudioError as exc:
            return i, exc, 0.0


def _keep_numpy(item: tuple) -> tuple:
    """Identity collate: keep numpy waveforms (the default would convert them to tensors)."""
    return item


@dataclass
class ExtractionSummary:
    utterances_in: int = 0
    embedded: int = 0
    dropped_short: list[str] = field(default_factory=list)
    skipped_errors: list[dict[str, str]] = field(default_factory=list)
    windows: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["n_dropped_short"], d["n_skipped_errors"] = len(self.dropped_short), len(self.skipped_errors)
        d["real_time_factor"] = self.wall_seconds / self.audio_seconds if self.audio_seconds else None
        d["audio_s_per_s"] = self.audio_seconds / self.wall_seconds if self.wall_seconds else None
        return d


def embed_one(encoder: SpeakerEncoder, wav: np.ndarray, windowing: Windowing) -> tuple[np.ndarray | None, int]:
    """(utterance embedding or None if too short, number of windows used)."""
    if windowing.window_s is None:
        emb = encoder.embed_utterance(wav)
        return emb, (0 if emb is None else 1)
    win, hop = windowing.samples(encoder.sample_rate)
    windows = encoder.embed_windowed(wav, win, hop)
    # an encoder marks a window it cannot embed (e.g. no usable frame) with NaN: leave it out
    windows = windows[np.isfinite(windows).all(axis=1)]
    if len(windows) == 0:
        return None, 0
    return average_windows(windows, windowing.renormalize), len(windows)


def extract_embeddings(utts: Sequence[Utterance], encoder: SpeakerEncoder, windowing: Windowing,
                       on_error: str = "raise", num_workers: int = 0,
                       progress: bool = True) -> tuple[list[str], np.ndarray, ExtractionSummary]:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    summary = ExtractionSummary(utterances_in=len(utts))
    ids: list[str] = []
    rows: list[np.ndarray] = []
    loader = DataLoader(FrontendDataset(utts, encoder.frontend), batch_size=None, shuffle=False,
                        num_workers=num_workers, collate_fn=_keep_numpy)
    t0 = time.perf_counter()
    bar = tqdm(loader, total=len(utts), desc=f"extract[{encoder.name}]", unit="utt", disable=not progress)
    with torch.inference_mode():
        for i, wav, seconds in bar:
            u = utts[i]
            if isinstance(wav, AudioError):
                if on_error == "raise":
                    raise wav
                summary.skipped_errors.append({"id": u.id, "path": wav.path, "reason": wav.problem})
                continue
            summary.audio_seconds += seconds
            emb, n_win = embed_one(encoder, wav, windowing)
            summary.windows += n_win
            if emb is None:
                summary.dropped_short.append(u.id)
                continue
            ids.append(u.id)
            rows.append(emb)
    summary.wall_seconds = time.perf_counter() - t0
    summary.embedded = len(ids)
    if summary.dropped_short:
        log.warning("dropped %d utterance(s) shorter than one window, e.g. %s", len(summary.dropped_short), summary.dropped_short[:3])
    if summary.skipped_errors:
        log.warning("skipped %d unreadable file(s): %s", len(summary.skipped_errors), summary.skipped_errors[:3])
    emb = np.stack(rows) if rows else np.zeros((0, encoder.embedding_dim), np.float32)
    return ids, emb, summary


def store_key(utts: Sequence[Utterance], encoder: SpeakerEncoder, windowing: Windowing, on_error: str,
              dtype: str = "float32") -> dict[str, Any]:
    """Everything that determines a store's content; a store is reused only if this matches.
    The manifest part hashes the utterances to embed (ids, paths, header facts and file size /
    mtime, so a re-encoded file is noticed), so a subset of a manifest gets its own store."""
    listing = [[u.id, u.path, u.duration, u.sample_rate, file_stat(u.path)] for u in utts]
    return {"manifest_hash": stable_hash(listing, 32), "n_utterances": len(utts), "encoder": encoder.config(),
            "windowing": windowing.describe(), "on_error": on_error, "dtype": dtype}


def open_matching_store(path: Path, key: dict[str, Any]) -> tuple[EmbeddingStore, dict[str, Any]] | None:
    """The store at ``path`` and its summary if it was made with exactly ``key``, else None."""
    if not (path / "meta.json").is_file():
        return None
    store = EmbeddingStore.open(path)
    if store.meta.get("key") != json.loads(json.dumps(key, default=str)):  # as stored (JSON: str keys)
        return None
    log.info("reusing embedding store %s", path)
    return store, {**store.meta["summary"], "reused_store": str(path)}


def extract_or_reuse(utts: Sequence[Utterance], encoder: SpeakerEncoder,
                     windowing: Windowing, store_root: str | Path, on_error: str = "raise",
                     num_workers: int = 0, dtype: str = "float32",
                     summary_path: str | Path | None = None) -> tuple[EmbeddingStore, dict[str, Any]]:
    """Open the matching store under ``store_root`` or extract and write it."""
    key = store_key(utts, encoder, windowing, on_error, dtype)
    path = Path(store_root) / f"{encoder.name}-{stable_hash(key)}"
    found = open_matching_store(path, key)
    if found:
        if summary_path:
            write_json_atomic(summary_path, found[1])
        return found
    ids, emb, summary = extract_embeddings(utts, encoder, windowing, on_error, num_workers)
    summary_d = summary.to_dict()
    store = EmbeddingStore.write(path, ids, emb, {"key": key, "summary": summary_d}, dtype=dtype)
    if summary_path:
        write_json_atomic(summary_path, {**summary_d, "store": str(path)})
    return store, summary_d
