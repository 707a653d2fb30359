"""VoxCeleb2: ``<subset>/aac/<spk>/<youtube_id>/<nnnnn>.m4a`` for subsets ``dev`` and ``test``.

``audio: m4a`` lists the AAC files as shipped; they are decoded on the fly through
:mod:`deeptalk_ser.data.audio.m4a` (PyAV). ``audio: wav`` lists a converted tree
``<subset>/wav/<spk>/<youtube_id>/<nnnnn>.wav`` (16 kHz mono PCM16) that
:func:`convert_voxceleb2` writes, which is what most toolkits train on: decoding 1M AAC files
every epoch costs more than the one-off conversion. The converted tree may live beside ``aac/``
(``--out`` = the corpus root) or elsewhere (then point ``root`` there and ``meta_file`` at the
original ``vox2_meta.csv`` by absolute path).

Convert (resumable: files already converted are skipped; each file is written atomically)::

    python -m deeptalk_ser.data.corpora.voxceleb2 convert --root R --out O --workers N

Split = subset. The optional ``vox2_meta.csv`` (``VoxCeleb2 ID, VGGFace2 ID, Gender, Set``,
comma-separated with padding spaces) adds ``gender``; it is read only when present.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from deeptalk_ser.data.audio.m4a import convert_m4a_to_wav
from deeptalk_ser.utils.errors import DataError
from deeptalk_ser.utils.processes import die_with_parent
from deeptalk_ser.data.manifest import Utterance
from deeptalk_ser.data.corpora._common import check_choices, file_fingerprint, iter_lines, resolve_in_root, walk_three_level
from deeptalk_ser.data.corpora.base import CorpusLoader

log = logging.getLogger(__name__)

VOX2_SUBSETS = ("dev", "test")
AUDIO_KINDS = {"m4a": ("aac", ".m4a"), "wav": ("wav", ".wav")}  # kind -> (folder, suffix)


def read_vox2_meta(path: Path) -> dict[str, str]:
    """{speaker: gender} from ``vox2_meta.csv``; the header line is recognised and skipped."""
    genders: dict[str, str] = {}
    for lineno, line in iter_lines(path):
        fields = [f.strip() for f in line.split(",")]
        if fields[0] == "VoxCeleb2 ID":
            continue
        if len(fields) != 4 or not all(fields):
            raise DataError(path, f"expected 'VoxCeleb2 ID, VGGFace2 ID, Gender, Set', got {line!r}", line=lineno)
        if fields[0] in genders:
            raise DataError(path, f"speaker {fields[0]} listed twice", line=lineno)
        genders[fields[0]] = fields[2].lower()
    return genders


class VoxCeleb2Corpus(CorpusLoader):
    """Options: ``subsets`` (``dev``/``test``), ``audio`` (``m4a`` as shipped or the converted
    ``wav`` tree), ``meta_file`` (optional gender table). Utterance id ``<spk>/<video>/<nnnnn>``."""
    name = "voxceleb2"

    def __init__(self, root: str | Path, subsets: Sequence[str] = ("dev",), audio: str = "m4a",
                 meta_file: str = "vox2_meta.csv") -> None:
        super().__init__(root)
        self.subsets = check_choices("subsets", subsets, VOX2_SUBSETS)
        if audio not in AUDIO_KINDS:
            raise ValueError(f"audio must be one of {sorted(AUDIO_KINDS)}, got {audio!r}")
        self.audio = audio
        self.meta_path = resolve_in_root(self.root, meta_file)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "subsets": self.subsets, "audio": self.audio,
                "label_files": {str(self.meta_path): file_fingerprint(self.meta_path)}}

    def scan(self) -> list[Utterance]:
        folder, suffix = AUDIO_KINDS[self.audio]
        genders = read_vox2_meta(self.meta_path) if self.meta_path.is_file() else {}
        utts = []
        for subset in self.subsets:
            base = self.require(f"{subset}/{folder}")
            for spk, video, name in walk_three_level(base, suffix):
                stem = name[: -len(suffix)]
                extra: dict[str, Any] = {"video": video}
                if spk in genders:
                    extra["gender"] = genders[spk]
                utts.append(Utterance(id=f"{spk}/{video}/{stem}", path=f"{subset}/{folder}/{spk}/{video}/{name}",
                                      speaker=spk, split=subset, corpus=self.name, extra=extra))
        if not utts:
            raise DataError(self.root, f"no VoxCeleb2 {suffix} files under {[f'{s}/{folder}' for s in self.subsets]}")
        return utts


@dataclass
class ConvertReport:
    total: int
    converted: int
    already_done: int
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source path, reason)
    seconds: float = 0.0


def _convert_one(job: tuple[str, str, int]) -> tuple[str, str | None]:
    src, dst, sr = job
    try:
        convert_m4a_to_wav(src, dst, sample_rate=sr)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop a 1M-file conversion
        return src, f"{type(exc).__name__}: {exc}"
    return src, None


def convert_voxceleb2(root: str | Path, out_root: str | Path, workers: int | None = None,
                      subsets: Sequence[str] | None = None, sample_rate: int = 16000) -> ConvertReport:
    """Convert ``<root>/<subset>/aac/**.m4a`` to ``<out_root>/<subset>/wav/**.wav`` (mono PCM16).

    Resumable: a target that exists is complete (writes are atomic) and is skipped, so an
    interrupted run simply starts again. Files that fail are reported, not fatal. ``subsets``
    defaults to those present under ``root``; ``workers`` defaults to the CPU count (decoding is
    CPU-bound, hence processes rather than threads; 1 runs in this process).
    """
    root, out_root = Path(root).expanduser(), Path(out_root).expanduser()
    if subsets is None:
        subsets = [s for s in VOX2_SUBSETS if (root / s / "aac").is_dir()]
        if not subsets:
            raise DataError(root, f"no VoxCeleb2 subset folder ({', '.join(s + '/aac' for s in VOX2_SUBSETS)})")
    subsets = check_choices("subsets", subsets, VOX2_SUBSETS)
    start = time.perf_counter()
    jobs: list[tuple[str, str, int]] = []
    total = 0
    for subset in subsets:
        src_base = root / subset / "aac"
        if not src_base.is_dir():
            raise DataError(src_base, "VoxCeleb2 subset folder missing")
        for spk, video, name in walk_three_level(src_base, ".m4a"):
            total += 1
            dst = out_root / subset / "wav" / spk / video / (name[: -len(".m4a")] + ".wav")
            if not dst.exists():
                jobs.append((str(src_base / spk / video / name), str(dst), sample_rate))
    report = ConvertReport(total=total, converted=0, already_done=total - len(jobs))
    log.info("VoxCeleb2 conversion: %d files, %d already converted, %d to do", total, report.already_done, len(jobs))
    workers = max(1, workers or os.cpu_count() or 1)
    if workers == 1 or len(jobs) <= 1:
        results = map(_convert_one, jobs)
        report = _collect(results, report, len(jobs))
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent) as pool:  # no orphans on kill -9
            report = _collect(pool.map(_convert_one, jobs, chunksize=32), report, len(jobs))
    report.seconds = time.perf_counter() - start
    return report


def _collect(results: Any, report: ConvertReport, n_jobs: int) -> ConvertReport:
    for done, (src, err) in enumerate(results, 1):
        if err is None:
            report.converted += 1
        else:
            report.failed.append((src, err))
            log.warning("conversion failed for %s: %s", src, err)
        if done % 10000 == 0:
            log.info("converted %d / %d", done, n_jobs)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI; exit status 1 when any file failed, so scripts notice a partial conversion."""
    parser = argparse.ArgumentParser(prog="python -m deeptalk_ser.data.corpora.voxceleb2",
                                     description="VoxCeleb2 utilities")
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="m4a -> 16 kHz mono PCM16 WAV, resumable")
    conv.add_argument("--root", required=True, help="VoxCeleb2 root holding dev/aac and/or test/aac")
    conv.add_argument("--out", required=True, help="output root (gets <subset>/wav/...); may equal --root")
    conv.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    conv.add_argument("--subsets", nargs="+", default=None, choices=VOX2_SUBSETS)
    conv.add_argument("--sample-rate", type=int, default=16000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    report = convert_voxceleb2(args.root, args.out, workers=args.workers, subsets=args.subsets,
                               sample_rate=args.sample_rate)
    print(f"{report.total} files: {report.converted} converted, {report.already_done} already done, "
          f"{len(report.failed)} failed ({report.seconds:.1f} s)")
    for src, err in report.failed[:20]:
        print(f"  FAILED {src}: {err}", file=sys.stderr)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
