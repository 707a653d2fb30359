"""``extract.py``: prepare a corpus manifest and fill its embedding store (one per corpus, encoder
and windowing; every evaluation task reads its rows from it) on the devices of ``cfg.trainer``:
only what the store lacks is extracted. Global rank 0 writes ``extract_summary.json``."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from deeptalk_ser.runs.common import get_embeddings, skip_line, start_run


def run(cfg: DictConfig) -> dict[str, Any]:
    out, data = start_run(cfg)
    store, summary, name = get_embeddings(cfg, data, summary_path=out / "extract_summary.json")
    if store is None:  # a DDP rank other than 0: its shards are written, rank 0 merges
        return summary
    print(f"[extract] {name}: {summary.get('embedded')} of {summary.get('utterances_in')} utterances have an "
          f"embedding ({summary.get('n_reused', 0)} reused from the store, {summary.get('n_embedded', 0)} extracted now; "
          f"{skip_line(summary)}; listed in extract_summary.json) -> {store.path}")
    return {**summary, "store": str(store.path)}
