"""Export the encoder network of a training checkpoint as a small, self-describing file.

A Lightning checkpoint also holds the optimiser state (3x the weights), the loss's head (AAM
softmax) and pickled config objects; the exported file keeps only the network's ``state_dict``
plus JSON-able provenance, so ``torch.load(..., weights_only=True)`` reads it.

    python -m deeptalk_ser.training.export <run>/checkpoints/best.ckpt out.pt --meta train_summary.json
    python -m deeptalk_ser.training.export --runs <run A> <run B> <run C> -- out.pt   # pick by val EER + card
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch

from deeptalk_ser.embedding.encoders.deeptalk import build_net, load_checkpoint
from deeptalk_ser.training.model_card import read_summary, render_model_card
from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.utils.io import atomic_path, write_text_atomic


def export_encoder(ckpt_path: str | Path, out_path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    net = build_net()
    kind = load_checkpoint(net, ckpt_path)  # validates every key and shape
    with atomic_path(out_path) as tmp:
        torch.save({"state_dict": net.state_dict(), "meta": {**(meta or {}), "exported_from": kind}}, tmp)
    return Path(out_path)


def card_path(out_path: str | Path) -> Path:
    """``encoder.pt`` -> ``MODEL_CARD.md`` beside it; ``name.pt`` -> ``name.MODEL_CARD.md`` otherwise."""
    out = Path(out_path)
    return out.with_name("MODEL_CARD.md" if out.stem == "encoder" else f"{out.stem}.MODEL_CARD.md")


def export_with_card(summary: dict[str, Any], out_path: str | Path,
                     compared: Sequence[dict[str, Any]] | None = None) -> tuple[Path, Path]:
    """Export ``summary``'s best checkpoint to ``out_path`` and write its model card beside it."""
    ckpt = summary.get("best_model_path")
    if not ckpt or not Path(ckpt).is_file():
        raise DataError(Path(summary.get("run_dir", ".")) / "train_summary.json",
                        f"best checkpoint {ckpt!r} is missing (no finite val/eer, or the file was removed)")
    meta = {k: summary.get(k) for k in ("loss", "global_step", "best_val_eer", "train_seconds", "data", "recipe",
                                        "val_history", "init_checkpoint", "command")}
    meta["best_model_path"] = str(ckpt)
    if compared:
        meta["compared"] = [{k: s.get(k) for k in ("run_dir", "loss", "global_step", "best_val_eer", "train_seconds")}
                            for s in compared]
    out = export_encoder(ckpt, out_path, meta)
    card = card_path(out)
    write_text_atomic(card, render_model_card(summary, out.name, compared))
    return out, card


def select_best(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run with the lowest finite best validation EER."""
    scored = [s for s in summaries if s.get("best_val_eer") is not None and math.isfinite(s["best_val_eer"])]
    if not scored:
        raise DataError(summaries[0].get("run_dir", "."), "no run has a finite best val/eer to select by")
    return min(scored, key=lambda s: s["best_val_eer"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", metavar="[checkpoint] out",
                    help="a training checkpoint and the output file; with --runs, the output file only")
    ap.add_argument("--meta", help="a JSON file whose content is stored as provenance")
    ap.add_argument("--runs", nargs="+", help="train.py run directories: export the best by val EER, with a card")
    args = ap.parse_args()
    if args.runs:
        if len(args.paths) != 1:
            ap.error("with --runs give only the output file")
        summaries = [read_summary(r) for r in args.runs]
        best = select_best(summaries)
        out, card = export_with_card(best, args.paths[0], summaries)
        print(f"{out} (from {best['run_dir']}, {best.get('loss')}, val EER {best['best_val_eer']:.4f}); card {card}")
        return
    if len(args.paths) != 2:
        ap.error("give a checkpoint and the output file, or --runs")
    meta = json.loads(Path(args.meta).read_text()) if args.meta else {}
    print(export_encoder(args.paths[0], args.paths[1], meta))


if __name__ == "__main__":
    main()
