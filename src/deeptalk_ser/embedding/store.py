"""The embedding store: one float array (rows aligned with an id index) plus its provenance.

Layout of a store directory: ``embeddings.npy`` (n x dim, float32 or float16, memory-mapped
on open), ``ids.txt`` (one utterance id per row), ``fingerprints.txt`` (extraction stores: one
fingerprint of the audio behind each row, aligned with ``ids.txt``), ``meta.json`` (the cache
key: encoder config, windowing, dtype; the utterances dropped with their reasons and
fingerprints; the summary of the job that last wrote it). The directory is written under a
temporary name and renamed (``utils/sharded.replace_dir``), so a store either exists complete
or not at all.

An extraction store is one per corpus (``<cache>/embeddings/<data.name>``), encoder, windowing
and dtype; every job selects its rows by id, and a job that asks for ids the store lacks (or
whose audio changed: another fingerprint) embeds only those and rewrites the store with them
(:func:`plan_request`, ``shards.merge_shards``). Design: docs/design/extraction.md section 9.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.utils.io import stable_hash
from deeptalk_ser.utils.sharded import matching_json, replace_dir

log = logging.getLogger(__name__)


@dataclass
class EmbeddingStore:
    path: Path
    ids: list[str]
    embeddings: np.ndarray  # memory-mapped when opened from disk
    meta: dict[str, Any]
    _index: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def write(cls, path: str | Path, ids: Sequence[str], embeddings: np.ndarray, meta: dict[str, Any],
              dtype: str = "float32") -> "EmbeddingStore":
        if len(ids) != len(embeddings):
            raise ValueError(f"{len(ids)} ids for {len(embeddings)} embedding rows")
        embeddings = np.asarray(embeddings)
        dim = embeddings.shape[1] if embeddings.ndim == 2 else 0
        step = 1 << 16  # rows per conversion to ``dtype``: bounded extra memory
        chunks = (embeddings[i:i + step] for i in range(0, len(embeddings), step))
        return cls.write_chunks(path, ids, chunks, dim, meta, dtype=dtype)

    @classmethod
    def write_chunks(cls, path: str | Path, ids: Sequence[str], chunks: Iterable[np.ndarray], dim: int,
                     meta: dict[str, Any], dtype: str = "float32",
                     fingerprints: Sequence[str] | None = None) -> "EmbeddingStore":
        """Write a store whose rows arrive in consecutive chunks (e.g. merged from shards).

        ``embeddings.npy`` (the same bytes ``np.save`` writes) is written sequentially, chunk by
        chunk, each converted to ``dtype``: peak memory is one chunk, not the whole array. The
        chunks' rows must add up to ``len(ids)``. ``fingerprints`` (one per id) name the audio
        each row was made from (:func:`row_fingerprint`).
        """
        path = Path(path)
        ids = list(ids)
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate ids in embedding store")
        if any("\n" in i or "\r" in i for i in ids):
            raise ValueError("embedding store ids must not contain line breaks")
        if fingerprints is not None and len(fingerprints) != len(ids):
            raise ValueError(f"{len(fingerprints)} fingerprints for {len(ids)} ids")
        with replace_dir(path, "embedding store for these settings") as tmp:
            header = np.lib.format.header_data_from_array_1_0(np.empty((0, dim), dtype=np.dtype(dtype)))
            header["shape"] = (len(ids), dim)
            row = 0
            with open(tmp / "embeddings.npy", "wb") as f:
                np.lib.format.write_array_header_1_0(f, header)
                for chunk in chunks:
                    chunk = np.asarray(chunk)
                    if len(chunk) == 0:
                        continue
                    if chunk.ndim != 2 or chunk.shape[1] != dim:
                        raise ValueError(f"chunk of shape {chunk.shape} does not fit a store of dim {dim}")
                    if row + len(chunk) > len(ids):
                        raise ValueError(f"more embedding rows than the {len(ids)} ids")
                    f.write(np.ascontiguousarray(chunk, dtype=dtype).data)
                    row += len(chunk)
            if row != len(ids):
                raise ValueError(f"{len(ids)} ids for {row} embedding rows")
            (tmp / "ids.txt").write_text(("\n".join(ids) + "\n") if ids else "", encoding="utf-8")
            if fingerprints is not None:
                (tmp / "fingerprints.txt").write_text("".join(f"{f}\n" for f in fingerprints), encoding="utf-8")
            (tmp / "meta.json").write_text(json.dumps({**meta, "n": len(ids), "dtype": dtype}, indent=2, default=str))
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path) -> "EmbeddingStore":
        path = Path(path)
        for name in ("embeddings.npy", "ids.txt", "meta.json"):
            if not (path / name).is_file():
                raise DataError(path / name, "embedding store is incomplete")
        emb = np.load(path / "embeddings.npy", mmap_mode="r")
        ids = (path / "ids.txt").read_text(encoding="utf-8").splitlines()
        if len(ids) != emb.shape[0]:
            raise DataError(path, f"store has {emb.shape[0]} rows but {len(ids)} ids")
        return cls(path, ids, emb, json.loads((path / "meta.json").read_text()))

    def fingerprints(self) -> list[str | None]:
        """The fingerprint of each row's audio (``None`` for every row of a store written without
        them: such rows never match a request, which embeds them again)."""
        path = self.path / "fingerprints.txt"
        found = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        if len(found) != len(self.ids):
            if found:
                log.warning("%s: %d fingerprints for %d rows; its rows are embedded again when asked for",
                            path, len(found), len(self.ids))
            return [None] * len(self.ids)
        return list(found)

    def index(self) -> dict[str, int]:
        """id -> row, built once per store (C-level ``dict(zip(...))``, about 0.1 s per million ids)."""
        if self._index is None:
            self._index = dict(zip(self.ids, range(len(self.ids))))
        return self._index

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Row numbers of ``ids``; a clear error listing (some of) the missing ones.

        One dict lookup per id (``map(dict.get, ...)``), no other per-id Python work."""
        idx = self.index()
        rows = np.array(list(map(idx.get, ids, itertools.repeat(-1, len(ids)))), dtype=np.int64).reshape(-1)
        if (rows < 0).any():
            missing = [ids[r] for r in np.flatnonzero(rows < 0)[:5]]
            raise KeyError(f"{int((rows < 0).sum())} id(s) not in store {self.path}: {missing}")
        return rows

    def select(self, ids: Sequence[str]) -> np.ndarray:
        """float32 embeddings of ``ids`` in that order (one fancy-index read, no per-id loop).

        Rows are read in ascending order (sequential on the memory map) and put back in the
        requested order."""
        rows = self.rows(ids)
        if len(rows) == 0:
            return np.zeros((0, self.embeddings.shape[1]), np.float32)
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), self.embeddings.shape[1]), np.float32)
        out[order] = self.embeddings[rows[order]]
        return out


# ----------------------------------------------------------------------------- reuse

#: the layout of extraction stores this version writes (part of their key): one store per corpus,
#: rows checked by fingerprint. Stores of the earlier layout (one per utterance subset) are not found.
STORE_LAYOUT = "per-corpus-rows-by-fingerprint"


def store_key(encoder: Any, windowing: Any, dtype: str = "float32") -> dict[str, Any]:
    """What every row of an extraction store depends on besides its audio: the encoder (with its
    front end), the windowing and the stored dtype. The corpus is the store's folder
    (``<cache>/embeddings/<data.name>``); which utterances it holds, and from which audio, is
    per row (ids and :func:`row_fingerprint`), so every subset of a corpus shares one store."""
    return {"layout": STORE_LAYOUT, "encoder": encoder.config(), "windowing": windowing.describe(), "dtype": dtype}


def row_fingerprint(u: Utterance) -> str:
    """The audio behind one row: path, header facts and prepare's content checksum (the file's
    stat for an utterance that did not come through prepare), hashed to 16 hex digits. A file
    replaced by another gets another fingerprint even when its size and mtime were kept."""
    listing = repr((u.path, u.duration, u.sample_rate, u.fingerprint()))
    return hashlib.blake2b(listing.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


@dataclass
class StoreRequest:
    """What a job's utterances need from a store: ``todo`` (positions to embed now: not in the
    store, or from other audio), the fingerprint of every utterance, how many the store already
    answers (a row or a recorded drop) and, of those, the files it recorded as unreadable."""

    todo: list[int]
    fingerprints: list[str]
    n_reused: int
    reused_errors: list[tuple[str, dict[str, Any]]]


def plan_request(store: EmbeddingStore | None, utts: Sequence[Utterance]) -> StoreRequest:
    """Which of ``utts`` the store answers and which must be embedded (one dict lookup per id)."""
    fps = [row_fingerprint(u) for u in utts]
    if store is None:
        return StoreRequest(list(range(len(utts))), fps, 0, [])
    index, have = store.index(), store.fingerprints()
    dropped: dict[str, dict[str, Any]] = store.meta.get("dropped") or {}
    todo, errors = [], []
    for i, (u, fp) in enumerate(zip(utts, fps)):
        row = index.get(u.id)
        if row is not None and have[row] == fp:
            continue
        rec = dropped.get(u.id)
        if rec is not None and rec.get("fingerprint") == fp and row is None:
            if rec.get("reason") == "error":
                errors.append((u.id, rec))
            continue
        todo.append(i)
    return StoreRequest(todo, fps, len(utts) - len(todo), errors)


def request_summary(store: EmbeddingStore, utts: Sequence[Utterance], request: StoreRequest) -> dict[str, Any]:
    """The part of a job's ``extract_summary.json`` that its utterances decide: how many have a
    row, which were dropped short or skipped unreadable (now or by an earlier job), how many the
    store answered (``n_reused``) and how many this job embedded (``n_embedded``)."""
    index, dropped = store.index(), store.meta.get("dropped") or {}
    short, errors = [], []
    for u in utts:
        if u.id in index:
            continue
        rec = dropped.get(u.id)
        if rec is None:  # cannot happen after extract_or_reuse: every asked id has a row or a drop
            raise RuntimeError(f"{u.id} is neither embedded nor dropped in {store.path}")
        if rec.get("reason") == "error":
            errors.append({"id": u.id, "path": rec.get("path", ""), "reason": rec.get("message", "")})
        else:
            short.append(u.id)
    out = {"utterances_in": len(utts), "embedded": len(utts) - len(short) - len(errors),
           "dropped_short": short, "skipped_errors": errors, "n_dropped_short": len(short),
           "n_skipped_errors": len(errors), "n_reused": request.n_reused, "n_embedded": len(request.todo),
           "store": str(store.path), "store_rows": len(store.ids)}
    if request.n_reused:
        out["reused_store"] = str(store.path)
    return out


def open_store(path: Path, key: dict[str, Any]) -> EmbeddingStore | None:
    """The store at ``path`` if it was made with ``key`` (compared as stored: JSON), else None."""
    if matching_json(path / "meta.json", {"key": key}) is None:
        return None
    return EmbeddingStore.open(path)


def open_matching_store(path: Path, key: dict[str, Any]) -> tuple[EmbeddingStore, dict[str, Any]] | None:
    """A store written whole for ``key`` (precomputed arrays) and its summary, else None."""
    store = open_store(path, key)
    if store is None:
        return None
    log.info("reusing embedding store %s", path)
    return store, {**store.meta["summary"], "reused_store": str(path)}


def store_path(root: str | Path, encoder_name: str, key: dict[str, Any]) -> Path:
    """Where the store of ``key`` lives under ``root``: one folder per key, named by its hash."""
    return Path(root) / f"{encoder_name}-{stable_hash(key)}"
