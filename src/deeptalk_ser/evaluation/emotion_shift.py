"""How emotion moves a speaker's embedding (the paper's Fig. 1).

For every speaker, cosine scores between their utterances of the *same text* spoken in two
different emotions, grouped by emotion pair, against two baselines: *genuine* (the same speaker,
two different neutral utterances) and *impostor* (two different speakers, both neutral). If
emotion moves the embedding, the inter-emotion scores fall below the genuine baseline toward
the impostor one. Needs a manifest extra naming the text (EmoDB ``text``, CREMA-D ``sentence``).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.evaluation.verification import unit_rows


def _stats(scores: Sequence[float]) -> dict[str, float]:
    a = np.asarray(scores, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std()), "n": int(a.size)} if a.size else {"mean": float("nan"), "std": float("nan"), "n": 0}


def emotion_shift(utts: Sequence[Utterance], emb: np.ndarray, emotions: Sequence[str], text_key: str = "text",
                  baseline: str = "neutral") -> dict[str, Any]:
    """Scores per emotion pair (same speaker, same text) and the genuine / impostor baselines."""
    if len(utts) != len(emb):
        raise ValueError(f"{len(utts)} utterances for {len(emb)} embeddings")
    emotions = list(emotions)
    if baseline not in emotions:
        raise ValueError(f"baseline emotion {baseline!r} must be one of {emotions}")
    missing = [u.id for u in utts if u.extra.get(text_key) is None]
    if missing:
        raise ValueError(f"{len(missing)} utterance(s) lack the text key {text_key!r} (e.g. {missing[:3]})")
    unit = unit_rows(emb)
    by_speaker_text: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    neutral_by_speaker: dict[str, list[int]] = defaultdict(list)
    for i, u in enumerate(utts):
        if u.label not in emotions:
            continue
        by_speaker_text[(u.speaker, str(u.extra[text_key]))][u.label].append(i)
        if u.label == baseline:
            neutral_by_speaker[u.speaker].append(i)

    pair_scores: dict[str, list[float]] = {f"{a}-{b}": [] for a, b in itertools.combinations(emotions, 2)}
    for groups in by_speaker_text.values():
        for a, b in itertools.combinations(emotions, 2):
            for i in groups.get(a, []):
                for j in groups.get(b, []):
                    pair_scores[f"{a}-{b}"].append(float(unit[i] @ unit[j]))
    genuine = [float(unit[i] @ unit[j]) for idx in neutral_by_speaker.values() for i, j in itertools.combinations(idx, 2)]
    impostor = [float(unit[i] @ unit[j]) for s1, s2 in itertools.combinations(sorted(neutral_by_speaker), 2)
                for i in neutral_by_speaker[s1] for j in neutral_by_speaker[s2]]
    pairs = {k: _stats(v) for k, v in pair_scores.items()}
    g, imp = _stats(genuine), _stats(impostor)
    inter = [s for v in pair_scores.values() for s in v]
    # where inter-emotion scores sit between the baselines: 0 = genuine level, 1 = impostor level
    position = (g["mean"] - float(np.mean(inter))) / (g["mean"] - imp["mean"]) if inter and g["n"] and imp["n"] else float("nan")
    return {"emotion_pairs": pairs, "genuine": g, "impostor": imp, "inter_emotion": _stats(inter),
            "shift_toward_impostor": position, "baseline_emotion": baseline, "text_key": text_key}


def plot_emotion_shift(result: dict[str, Any], path: str, title: str) -> str:
    """Bar per emotion pair (mean +/- std) with the genuine and impostor baselines as lines."""
    from deeptalk_ser.utils.reporting import pyplot_agg

    plt = pyplot_agg()

    pairs = {k: v for k, v in result["emotion_pairs"].items() if v["n"]}
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(pairs) + 2), 4))
    ax.bar(range(len(pairs)), [v["mean"] for v in pairs.values()], yerr=[v["std"] for v in pairs.values()],
           color="#7a9cc6", capsize=2)
    ax.axhline(result["genuine"]["mean"], color="green", ls="--", label=f"genuine ({result['baseline_emotion']} vs {result['baseline_emotion']}, same speaker)")
    ax.axhline(result["impostor"]["mean"], color="red", ls="--", label="impostor (different speakers)")
    ax.set_xticks(range(len(pairs)), list(pairs), rotation=45, ha="right")
    ax.set_ylabel("cosine score")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
