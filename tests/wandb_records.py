"""Read an offline W&B run back (``<run>/wandb/offline-run-*/run-<id>.wandb``) without W&B's
servers: what the tests check (test-only code, not part of the package).

The ``.wandb`` file is a LevelDB-style log (a 7-byte ``:W&B`` header, then 32 KiB blocks of
records with 7-byte headers: CRC32, length, type FULL/FIRST/MIDDLE/LAST) of protobuf
``wandb.proto.wandb_internal_pb2.Record`` messages. W&B 0.31 ships no Python reader for it, so
this is a small one; the CRCs are not checked.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

_HEADER = b":W&B"
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_records(path: str | Path) -> Iterator[Any]:
    """Every ``Record`` protobuf of one ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != _HEADER:
        raise ValueError(f"{path}: not a W&B transaction log (header {data[:7]!r})")
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == _FULL:
            payload: bytes | None = chunk
        elif kind == _FIRST:
            pending, payload = chunk, None
        elif kind == _MIDDLE:
            pending, payload = pending + chunk, None
        elif kind == _LAST:
            payload, pending = pending + chunk, b""
        else:
            raise ValueError(f"{path}: unknown record type {kind} at byte {pos}")
        if payload is not None:
            rec = pb.Record()
            rec.ParseFromString(payload)
            yield rec


def _key(item: Any) -> str:
    return item.key if item.key else "/".join(item.nested_key)


def _set(target: dict[str, Any], item: Any, value: Any) -> None:
    """``key`` -> ``target[key]``; ``nested_key`` [a, b] -> ``target[a][b]`` (a is the logged key)."""
    if item.key:
        target[item.key] = value
        return
    *parents, last = item.nested_key
    for k in parents:
        node = target.get(k)
        target[k] = node = node if isinstance(node, dict) else {}
        target = node
    target[last] = value


@dataclass
class OfflineRun:
    """What one offline run logged: identity, config, the final summary and the logged keys."""

    path: Path
    run_id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    project: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history_keys: set[str] = field(default_factory=set)
    artifacts: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    exited: bool = False

    def tables(self) -> dict[str, Path]:
        """``{key: table.json path}`` of every W&B Table this run logged (``files/media/table``)."""
        out = {}
        root = self.path / "files" / "media" / "table"
        for p in sorted(root.rglob("*.table.json")) if root.is_dir() else []:
            rel = p.relative_to(root).as_posix()
            out[rel.rsplit("_", 2)[0]] = p  # <key>_<step>_<hash>.table.json
        return out

    def table(self, key: str) -> dict[str, Any]:
        """The ``{"columns": [...], "data": [[...]]}`` of table ``key``."""
        return json.loads(self.tables()[key].read_text())


def read_offline_run(run_dir: str | Path) -> OfflineRun:
    """Parse ``offline-run-*`` directory ``run_dir`` (or its ``run-<id>.wandb`` file)."""
    run_dir = Path(run_dir)
    log_file = run_dir if run_dir.suffix == ".wandb" else next(iter(sorted(run_dir.glob("run-*.wandb"))), None)
    if log_file is None:
        raise FileNotFoundError(f"{run_dir}: no run-*.wandb file")
    run = OfflineRun(path=log_file.parent)
    for rec in iter_records(log_file):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.run_id, run.name, run.group, run.job_type, run.project = (r.run_id, r.display_name, r.run_group,
                                                                          r.job_type, r.project)
            for item in r.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "summary":
            for item in rec.summary.update:
                _set(run.summary, item, json.loads(item.value_json))
        elif kind == "history":
            run.history_keys.update(item.key or item.nested_key[0] for item in rec.history.item)
        elif kind == "artifact":
            run.artifacts.append(f"{rec.artifact.type}:{rec.artifact.name}")
        elif kind == "files":
            run.files.extend(f.path for f in rec.files.files)
        elif kind == "exit":
            run.exited = True
    return run


def find_offline_runs(root: str | Path) -> list[OfflineRun]:
    """Every offline run below ``root`` (e.g. a multirun's sweep directory), by directory name."""
    return [read_offline_run(d) for d in sorted(Path(root).rglob("offline-run-*")) if d.is_dir()]
