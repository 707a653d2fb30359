"""Model cards written from training runs, never by hand: what a user of a shipped encoder needs
to trust or reproduce it (data, recipe, steps, wall time, validation curve, and the runs it was
chosen among).

``train.py`` writes ``<run>/MODEL_CARD.md`` beside ``<run>/encoder.pt`` (the best checkpoint,
exported); ``python -m deeptalk_ser.training.export --runs A B C -- out.pt`` picks the run with the
lowest best validation EER and writes the card with the comparison table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from deeptalk_ser.utils.errors import DataError


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """A run's ``train_summary.json`` (a clear error when the run did not finish)."""
    p = Path(run_dir) / "train_summary.json"
    try:
        summary = json.loads(p.read_text())
    except FileNotFoundError as exc:
        raise DataError(p, "no train_summary.json: the run did not finish (or is not a train.py run)") from exc
    except json.JSONDecodeError as exc:
        raise DataError(p, f"not valid JSON ({exc})", line=exc.lineno) from exc
    summary.setdefault("run_dir", str(Path(run_dir)))
    return summary


def _num(v: Any, fmt: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return format(v, fmt)


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def best_row(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The validation epoch with the lowest finite EER (ties: the earliest)."""
    rows = [r for r in summary.get("val_history") or [] if r.get("eer") is not None and math.isfinite(r["eer"])]
    return min(rows, key=lambda r: (r["eer"], r["step"])) if rows else None


def comparison_rows(summaries: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["| run | loss | steps | wall time | best val EER (step) | val minDCF p=0.01 there |",
             "|---|---|---|---|---|---|"]
    for s in summaries:
        b = best_row(s) or {}
        lines.append(f"| `{Path(s.get('run_dir', '?')).name}` | {s.get('loss')} | {s.get('global_step')} | "
                     f"{_hms(s.get('train_seconds'))} | {_num(b.get('eer'))} ({b.get('step', 'n/a')}) | "
                     f"{_num(b.get('min_dcf_p0.01'))} |")
    return lines


def _plain(node: dict[str, Any] | None, keep_target: bool = False) -> dict[str, Any]:
    """A config node for the card: without Hydra's ``_partial_`` (and ``_target_``, unless it is
    what the reader needs, as the optimiser's class)."""
    drop = {"_partial_"} if keep_target else {"_partial_", "_target_"}
    return {k: v for k, v in (node or {}).items() if k not in drop}


def optimiser_row(recipe: dict[str, Any]) -> str:
    """Learning rate, optimiser and gradient clipping of a run's recipe: this code's (lr in the
    ``training.optimizer`` node, clipping from ``trainer.gradient_clip_val``) or an earlier run's
    (``training.lr``, ``training.grad_clip``), so older runs still get their card."""
    t = recipe.get("training") or {}
    opt = _plain(t.get("optimizer"), keep_target=True)
    lr = opt.pop("lr", t.get("lr"))
    clip = (recipe.get("gradient_clip") or {}).get("val", t.get("grad_clip"))
    return f"lr {lr}, `{json.dumps(opt, sort_keys=True)}`, gradient-norm clip {clip}"


def render_model_card(summary: dict[str, Any], file_name: str,
                      compared: Sequence[dict[str, Any]] | None = None) -> str:
    """Markdown for the encoder exported from ``summary``'s best checkpoint."""
    recipe = summary.get("recipe") or {}
    t = recipe.get("training") or {}
    data = summary.get("data") or {}
    best = best_row(summary) or {}
    lines = [f"# Model card: `{file_name}`", "",
             "Written by `deeptalk_ser.training.model_card` from the training run; do not edit by hand.", "",
             "DeepTalk speaker encoder (DeepVOX learned filterbank + Global Style Token layer, 256-d "
             "L2-normalised embeddings of 8 kHz audio); only the network is exported (no loss head, no "
             "optimiser state), loadable with `torch.load(..., weights_only=True)`.", "",
             "## Training", "", "| item | value |", "|---|---|",
             f"| data | `{data.get('name')}` split `{data.get('train_split')}`: {summary.get('train_speakers')} "
             f"speakers / {summary.get('train_utterances')} utterances trained on "
             f"({_num(data.get('hours'), '.2f')} h after VAD), {data.get('val_speakers')} speakers / "
             f"{summary.get('val_utterances')} utterances held out for validation |",
             f"| loss | {summary.get('loss')}: `{json.dumps(recipe.get('loss') or {}, sort_keys=True)}` |",
             f"| batch | {t.get('speakers_per_batch')} speakers x {t.get('utterances_per_speaker')} crops of "
             f"{t.get('crop_frames')} frames |",
             f"| optimiser | {optimiser_row(recipe)} |",
             f"| schedule | `{json.dumps(_plain(t.get('scheduler')), sort_keys=True)}` |",
             f"| augmentation | `{json.dumps(_plain(t.get('augment')), sort_keys=True)}` |",
             f"| initialised from | {summary.get('init_checkpoint') or 'random (seed ' + str(recipe.get('seed')) + ')'} |",
             f"| steps / wall time | {summary.get('global_step')} steps, {_hms(summary.get('train_seconds'))} "
             f"(h:mm:ss, all resumes included) on {summary.get('hardware', 'n/a')} |",
             f"| selected checkpoint | step {best.get('step', 'n/a')}: val EER {_num(best.get('eer'))}, "
             f"minDCF(p=0.01) {_num(best.get('min_dcf_p0.01'))} |",
             f"| command | `{summary.get('command', 'n/a')}` |", "",
             "## Validation curve (held-out training speakers, every epoch)", "",
             "| step | wall time | val EER | val minDCF p=0.01 |", "|---|---|---|---|"]
    for r in summary.get("val_history") or []:
        lines.append(f"| {r.get('step')} | {_hms(r.get('train_seconds'))} | {_num(r.get('eer'))} | "
                     f"{_num(r.get('min_dcf_p0.01'))} |")
    if compared:
        lines += ["", "## Chosen among (lowest best validation EER)", ""] + comparison_rows(compared)
    return "\n".join(lines) + "\n"
