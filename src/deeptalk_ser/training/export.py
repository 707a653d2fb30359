"""Export the encoder network of a training checkpoint as a small, self-describing file.

A Lightning checkpoint also holds the optimiser state (3x the weights) and pickled config
objects; the shipped file keeps only the network's ``state_dict`` plus JSON-able provenance,
so ``torch.load(..., weights_only=True)`` reads it.

    python -m deeptalk_ser.training.export <run>/checkpoints/best.ckpt out.pt --meta train_summary.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from deeptalk_ser.embedding.encoders.deeptalk import build_net, load_checkpoint
from deeptalk_ser.utils.io import atomic_path


def export_encoder(ckpt_path: str | Path, out_path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    net = build_net()
    kind = load_checkpoint(net, ckpt_path)  # validates every key and shape
    with atomic_path(out_path) as tmp:
        torch.save({"state_dict": net.state_dict(), "meta": {**(meta or {}), "exported_from": kind}}, tmp)
    return Path(out_path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--meta", help="a JSON file whose content is stored as provenance")
    args = ap.parse_args()
    meta = json.loads(Path(args.meta).read_text()) if args.meta else {}
    print(export_encoder(args.checkpoint, args.out, meta))


if __name__ == "__main__":
    main()
