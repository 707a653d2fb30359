"""Which style tokens does each emotion attend to? Mean GST attention (``encoder.output=gst_attention``,
8 heads x 10 tokens per utterance) per emotion label, as one heat map per emotion.

    python -m deeptalk_ser.evaluation.token_attention cache/embeddings/emodb/deeptalk_gst_attention-<hash> \\
        cache/manifests/emodb/manifest.jsonl docs/figures/token_attention_emodb.png
"""

from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np

from deeptalk_ser.data.manifest import read_manifest
from deeptalk_ser.embedding.store import EmbeddingStore

HEADS, TOKENS = 8, 10


def mean_attention(X: np.ndarray, labels: Sequence[str | None]) -> dict[str, np.ndarray]:
    """``{emotion: (heads, tokens) mean attention}`` over that emotion's rows (unlabelled rows left out)."""
    X = np.asarray(X, dtype=np.float64)
    if X.shape[1] != HEADS * TOKENS:
        raise ValueError(f"gst_attention rows are {HEADS * TOKENS}-d, got {X.shape[1]}")
    lab = np.asarray(labels, dtype=object)
    return {str(e): X[lab == e].mean(axis=0).reshape(HEADS, TOKENS) for e in sorted({x for x in lab if x is not None})}


def plot_mean_attention(means: dict[str, np.ndarray], path: str, title: str) -> str:
    """One (heads x tokens) heat map per emotion on a shared colour scale, plus each map minus the
    mean over emotions (what is specific to the emotion)."""
    from deeptalk_ser.utils.reporting import pyplot_agg

    plt = pyplot_agg()

    names = list(means)
    overall = np.mean([means[e] for e in names], axis=0)
    fig, axes = plt.subplots(2, len(names), figsize=(1.9 * len(names), 3.8), squeeze=False)
    vmax = max(float(m.max()) for m in means.values())
    dmax = max(float(np.abs(m - overall).max()) for m in means.values()) or 1.0
    for j, e in enumerate(names):
        top = axes[0, j].imshow(means[e], vmin=0.0, vmax=vmax, cmap="viridis")
        bottom = axes[1, j].imshow(means[e] - overall, vmin=-dmax, vmax=dmax, cmap="coolwarm")
        axes[0, j].set_title(e, fontsize=8)
        for ax in axes[:, j]:
            ax.set_xticks(range(TOKENS))
            ax.set_yticks(range(HEADS))
            ax.tick_params(labelsize=5)
    axes[0, 0].set_ylabel("head (mean)", fontsize=7)
    axes[1, 0].set_ylabel("head (- all)", fontsize=7)
    fig.colorbar(top, ax=axes[0, :].tolist(), shrink=0.8)
    fig.colorbar(bottom, ax=axes[1, :].tolist(), shrink=0.8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="an encoder.output=gst_attention embedding store directory")
    parser.add_argument("manifest", help="the corpus's prepared manifest.jsonl (labels)")
    parser.add_argument("png")
    parser.add_argument("--title", default="DeepTalk GST: mean token attention per emotion")
    args = parser.parse_args(argv)
    store = EmbeddingStore.open(args.store)
    labelled = [u for u in read_manifest(args.manifest) if u.label is not None and u.id in store.index()]
    means = mean_attention(store.select([u.id for u in labelled]), [u.label for u in labelled])
    print(plot_mean_attention(means, args.png, args.title))


if __name__ == "__main__":
    main()
