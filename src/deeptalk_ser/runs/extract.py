"""``extract.py``: prepare a corpus manifest and extract (or reuse) its embedding store on the
devices of ``cfg.trainer``; global rank 0 writes ``extract_summary.json``."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from deeptalk_ser.runs.common import get_embeddings, skip_line, start_run


def run(cfg: DictConfig) -> dict[str, Any]:
    out, data = start_run(cfg)
    store, summary, name = get_embeddings(cfg, data, summary_path=out / "extract_summary.json")
    if store is None:  # a DDP rank other than 0: its shards are written, rank 0 merges
        return summary
    print(f"[extract] {name}: {summary.get('embedded')} of {summary.get('utterances_in')} utterances embedded "
          f"({skip_line(summary)}; listed in extract_summary.json) -> {store.path}")
    return {**summary, "store": str(store.path)}
