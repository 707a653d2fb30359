"""Speaker-verification trial lists: generate, read and write them.

A trial is ``(label, enrol_id, test_id)`` with label 1 = target (same speaker) and 0 =
non-target. Trial files use the VoxCeleb text format, one ``<1|0> <enrol> <test>`` per line.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from deeptalk_ser.data.manifest import Utterance, check_unique_ids
from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.utils.io import iter_lines, write_text_atomic


class Trial(NamedTuple):
    """One verification trial; a plain tuple ``(label, enrol, test)`` compares equal."""

    label: int
    enrol: str
    test: str


# --------------------------------------------------------------------------- trial lists


def generate_trials(
    utterances: Sequence[Utterance],
    n_nontarget_per_target: float | int | None = None,
    seed: int = 0,
) -> list[Trial]:
    """All target pairs plus a seeded random sample of non-target pairs.

    Targets: every unordered same-speaker pair ``(i, j)``, ``i < j`` in input order, with
    ``enrol = utterances[i]``. Non-targets: ``n_nontarget_per_target * n_target`` (rounded
    half up) distinct unordered different-speaker pairs, i.e. the argument is a ratio:
    ``None`` means 1.0 (as many non-targets as targets), 10 means ten per target, 0 none.
    They are drawn uniformly without replacement with ``numpy.random.default_rng(seed)``
    and also stored with the earlier utterance as enrol. No pair appears twice, nor in
    both orders.

    Output order is deterministic for a given input order and seed: targets sorted by
    ``(i, j)``, then non-targets sorted by ``(i, j)``.

    Raises ValueError when there is no target pair (every speaker has one utterance) or
    when more non-targets are requested than exist.
    """
    check_unique_ids(utterances, "generate_trials input")
    ratio = 1.0 if n_nontarget_per_target is None else float(n_nontarget_per_target)
    if not np.isfinite(ratio) or ratio < 0:
        raise ValueError(f"n_nontarget_per_target must be >= 0, got {n_nontarget_per_target!r}")

    n = len(utterances)
    ids = [u.id for u in utterances]
    _, spk = np.unique(np.array([u.speaker for u in utterances], dtype=object), return_inverse=True)
    spk = spk.astype(np.int64)

    groups: dict[int, list[int]] = {}
    for i, s in enumerate(spk.tolist()):
        groups.setdefault(s, []).append(i)
    target_pairs = sorted(p for g in groups.values() for p in itertools.combinations(g, 2))
    n_target = len(target_pairs)
    if n_target == 0:
        raise ValueError("no target trials: every speaker has a single utterance")

    n_nontarget = int(np.floor(ratio * n_target + 0.5))  # half up, not banker's rounding
    available = n * (n - 1) // 2 - n_target
    if n_nontarget > available:
        raise ValueError(
            f"requested {n_nontarget} non-target trials but only {available} different-speaker "
            f"pairs exist; lower n_nontarget_per_target"
        )
    codes = _sample_nontarget_codes(spk, n_nontarget, available, np.random.default_rng(seed))
    nontarget_pairs = zip((codes // n).tolist(), (codes % n).tolist())

    trials = [Trial(1, ids[i], ids[j]) for i, j in target_pairs]
    trials += [Trial(0, ids[i], ids[j]) for i, j in nontarget_pairs]
    return trials


def _sample_nontarget_codes(
    spk: np.ndarray, m: int, available: int, rng: np.random.Generator
) -> np.ndarray:
    """``m`` distinct different-speaker pairs ``i < j`` encoded as ``i * n + j``, sorted.

    Dense requests (at least half of all pairs) enumerate every pair and choose without
    replacement; sparse ones use rejection sampling, which stays fast because each round
    keeps at least half its draws on average and never builds the O(n^2) pair list.
    """
    n = len(spk)
    if m == 0:
        return np.empty(0, dtype=np.int64)
    if 2 * m >= available:
        i, j = np.triu_indices(n, k=1)
        keep = spk[i] != spk[j]
        all_codes = i[keep].astype(np.int64) * n + j[keep]
        return np.sort(rng.choice(all_codes, size=m, replace=False))
    codes = np.empty(0, dtype=np.int64)
    while len(codes) < m:
        draw = max(2 * (m - len(codes)), 1024)
        a = rng.integers(0, n, size=draw)
        b = rng.integers(0, n, size=draw)
        ok = spk[a] != spk[b]
        lo, hi = np.minimum(a[ok], b[ok]), np.maximum(a[ok], b[ok])
        merged = np.concatenate([codes, lo * n + hi])
        _, first = np.unique(merged, return_index=True)
        codes = merged[np.sort(first)]  # de-duplicated, earlier draws win
    return np.sort(codes[:m])


#: file suffixes the official lists carry (``id10270/5r0dWxy17C8/00001.wav``); manifest ids have none
_AUDIO_SUFFIXES = (".wav", ".flac", ".m4a")


def _trial_id(name: str) -> str:
    for suffix in _AUDIO_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_trials(path: str | Path) -> list[Trial]:
    """Read a VoxCeleb-format trial list (``<1|0> <enrol> <test>``; blank lines skipped). An
    audio suffix on an id is dropped, so the official lists (``veri_test2.txt``) name manifest ids."""
    trials = []
    for lineno, line in iter_lines(path, "trial list"):
        fields = line.split()
        if len(fields) != 3:
            raise DataError(path, f"expected '<1|0> <enrol> <test>', got {len(fields)} field(s)", line=lineno)
        if fields[0] not in ("0", "1"):
            raise DataError(path, f"label must be 1 or 0, got {fields[0]!r}", line=lineno)
        trials.append(Trial(int(fields[0]), _trial_id(fields[1]), _trial_id(fields[2])))
    if not trials:
        raise DataError(path, "trial list holds no trials")
    return trials


def write_trials(path: str | Path, trials: Iterable[tuple[int, str, str]]) -> None:
    """Write a VoxCeleb-format trial list atomically; ids must not contain whitespace."""
    lines = []
    for n, (label, enrol, test) in enumerate(trials):
        if label not in (0, 1):
            raise ValueError(f"trial {n}: label must be 0 or 1, got {label!r}")
        for name in (enrol, test):
            if not name or len(str(name).split()) != 1 or str(name) != str(name).strip():
                raise ValueError(f"trial {n}: id {name!r} is empty or contains whitespace")
        lines.append(f"{int(label)} {enrol} {test}\n")
    write_text_atomic(path, "".join(lines))
