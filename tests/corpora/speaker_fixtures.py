"""Tiny speaker-corpus trees in the exact distributed layouts (VoxCeleb1/2, LibriSpeech, Kaldi).

Each ``build_*`` writes a tree under a given folder and the tests compare the loaders against
counts written here by hand, so a layout change shows up as a precise mismatch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DATA = REPO_ROOT / "conf" / "data"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def write_audio(path: Path, seconds: float = 0.1, sr: int = 16000, channels: int = 1) -> Path:
    """A short 16-bit sine; the container (WAV/FLAC) follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(round(seconds * sr))) / sr
    wav = 0.3 * np.sin(2 * np.pi * 440.0 * t)
    sf.write(str(path), np.stack([wav] * channels, axis=1) if channels > 1 else wav, sr, subtype="PCM_16")
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_m4a(path: Path, seconds: float = 1.0, sr: int = 16000, channels: int = 1) -> Path:
    """A real AAC-in-MP4 file of a 440 Hz sine, encoded with PyAV (as VoxCeleb2 ships m4a)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * sr))
    wav = (0.3 * np.sin(2 * np.pi * 440.0 * np.arange(n) / sr)).astype(np.float32)
    planes = np.stack([wav] * channels)
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=sr, layout=layout)
        for start in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes[:, start:start + 1024]),
                                               format="fltp", layout=layout)
            frame.sample_rate, frame.pts = sr, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


# --------------------------------------------------------------------------- VoxCeleb1
VOX1_META = (
    "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
    "id10001\tA.J._Buckley\tm\tIreland\tdev\n"
    "id10002\tAaron_Tveit\tm\tUSA\tdev\n"
    "id10003\tAamir_Khan\tm\tIndia\tdev\n"
    "id10004\tAaron_Yoo\tm\tUSA\tdev\n"  # listed, but not on disk (dev and test unzipped apart)
    "id10270\tEddie_Izzard\tm\tUK\ttest\n"
    "id10271\tEdmund_Stoiber\tm\tGermany\ttest\n"
    "id10272\tEla_Bhatt\tf\tIndia\ttest\n"
)
#: speaker -> video -> utterance numbers on disk.
VOX1_TREE = {
    "id10001": {"1zcIwhmdeo4": ["00001", "00002"], "7w0IBEWc9Qw": ["00001"]},
    "id10002": {"0_laIeN-Q44": ["00001", "00002"]},
    "id10003": {"5ablueV_1tw": ["00001", "00002"]},
    "id10270": {"x6uYqmx31kE": ["00001"], "8jEAjG6SegY": ["00008"]},
    "id10271": {"1gtz-CUIygI": ["00001"]},
    "id10272": {"kaF0S5XT-TQ": ["00001"]},
}
VOX1_IDEN_SPLIT = (
    "1 id10001/1zcIwhmdeo4/00001.wav\n"
    "2 id10001/1zcIwhmdeo4/00002.wav\n"
    "3 id10001/7w0IBEWc9Qw/00001.wav\n"
    "1 id10002/0_laIeN-Q44/00001.wav\n"
)
#: Vox1-O style: test speakers only.
VOX1_VERI_TEST2 = (
    "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
    "0 id10270/x6uYqmx31kE/00001.wav id10271/1gtz-CUIygI/00001.wav\n"
)
#: Vox1-H style: also names dev speakers.
VOX1_HARD2 = (
    "1 id10002/0_laIeN-Q44/00001.wav id10002/0_laIeN-Q44/00002.wav\n"
    "0 id10002/0_laIeN-Q44/00001.wav id10272/kaF0S5XT-TQ/00001.wav\n"
)


def build_voxceleb1(root: Path, seconds: float = 0.1) -> Path:
    """11 utterances of 6 speakers on disk (3 dev, 3 test; a 4th dev speaker only in the meta),
    meta, iden split and two trial lists."""
    for spk, videos in VOX1_TREE.items():
        for video, numbers in videos.items():
            for n in numbers:
                write_audio(root / "wav" / spk / video / f"{n}.wav", seconds=seconds)
    write_text(root / "vox1_meta.csv", VOX1_META)
    write_text(root / "iden_split.txt", VOX1_IDEN_SPLIT)
    write_text(root / "veri_test2.txt", VOX1_VERI_TEST2)
    write_text(root / "list_test_hard2.txt", VOX1_HARD2)
    return root


# --------------------------------------------------------------------------- VoxCeleb2
#: subset -> speaker -> video -> utterance numbers.
VOX2_TREE = {
    "dev": {"id00012": {"21Uxsk56VDQ": ["00001", "00002"]}, "id00015": {"0fijmz4vTVU": ["00001"]}},
    "test": {"id00017": {"01dfn2spqyE": ["00001"]}},
}
VOX2_META = (
    "VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set \n"
    "id00012 ,n000012 ,m ,dev \n"
    "id00015 ,n000015 ,f ,dev \n"
    "id00017 ,n000017 ,m ,test \n"
)


def build_voxceleb2(root: Path, seconds: float = 1.0) -> Path:
    """4 real AAC m4a files (3 dev, 1 test) and the meta table."""
    for subset, speakers in VOX2_TREE.items():
        for spk, videos in speakers.items():
            for video, numbers in videos.items():
                for n in numbers:
                    write_m4a(root / subset / "aac" / spk / video / f"{n}.m4a", seconds=seconds)
    write_text(root / "vox2_meta.csv", VOX2_META)
    return root


# --------------------------------------------------------------------------- LibriSpeech
LIBRI_SPEAKERS_TXT = (
    "; Some of the speakers are credited with a name that is not their own.\n"
    ";ID  |SEX| SUBSET           |MINUTES| NAME\n"
    "14   | F | train-other-500  | 25.03 | Kristin LeMoine\n"
    "19   | F | train-clean-100  | 25.19 | Patricia Oakley\n"
    "60   | M | train-clean-100  | 20.18 | |CBW|Simon\n"
    "84   | F | dev-clean        |  8.02 | Christie Nowak\n"
)
#: subset -> speaker -> chapter -> utterance indices on disk.
LIBRI_TREE = {
    "train-clean-100": {"19": {"198": ["0000", "0001"]}, "60": {"121082": ["0000"]}},
    "train-other-500": {"14": {"208": ["0000", "0001"]}},
    "dev-clean": {"84": {"121123": ["0000"]}},
}
#: transcripts; 19-198-0001 has no line on purpose.
LIBRI_TEXT = {
    "19-198-0000": "NORTHANGER ABBEY",
    "60-121082-0000": "A LITTLE CRACKED THAT IN THE POPULAR PHRASE WAS MY IMPRESSION",
    "14-208-0000": "AT LAST THE BEST AND MOST HELPFUL",
    "14-208-0001": "HE LOOKED AT HER",
    "84-121123-0000": "GO DO YOU HEAR",
}


def build_librispeech(root: Path, seconds: float = 0.1) -> Path:
    """``root`` is the ``LibriSpeech/`` folder: 6 FLAC utterances of 4 speakers in 3 subsets."""
    for subset, speakers in LIBRI_TREE.items():
        for spk, chapters in speakers.items():
            for chapter, indices in chapters.items():
                lines = []
                for idx in indices:
                    utt = f"{spk}-{chapter}-{idx}"
                    write_audio(root / subset / spk / chapter / f"{utt}.flac", seconds=seconds)
                    if utt in LIBRI_TEXT:
                        lines.append(f"{utt} {LIBRI_TEXT[utt]}\n")
                write_text(root / subset / spk / chapter / f"{spk}-{chapter}.trans.txt", "".join(lines))
    write_text(root / "SPEAKERS.TXT", LIBRI_SPEAKERS_TXT)
    return root


# --------------------------------------------------------------------------- Kaldi (speechocean762 layout)
#: subset -> speaker -> (gender, utterance ids); speaker "14" clashes with LibriSpeech's on purpose.
KALDI_TREE = {
    "train": {"14": ("f", ["000010011", "000010012"]), "0003": ("m", ["000030012"])},
    "test": {"0007": ("m", ["000070011", "000070012", "000070013"])},
}


def build_kaldi(root: Path, seconds: float = 0.1, sr: int = 8000) -> Path:
    """speechocean762-style Kaldi data dirs with ``wav.scp`` paths relative to ``root``."""
    for subset, speakers in KALDI_TREE.items():
        scp, u2s, s2u, s2g, text = [], [], [], [], []
        for spk, (gender, utts) in speakers.items():
            for utt in utts:
                rel = f"WAVE/SPEAKER{spk}/{utt}.flac"
                write_audio(root / rel, seconds=seconds, sr=sr)
                scp.append(f"{utt} {rel}\n")
                u2s.append(f"{utt} {spk}\n")
                text.append(f"{utt} MARK IS GOING TO SEE ELEPHANT\n")
            s2u.append(f"{spk} {' '.join(utts)}\n")
            s2g.append(f"{spk} {gender}\n")
        for name, lines in (("wav.scp", scp), ("utt2spk", u2s), ("spk2utt", s2u), ("spk2gender", s2g), ("text", text)):
            write_text(root / subset / name, "".join(sorted(lines)))
    return root


# --------------------------------------------------------------------------- Hydra configs
def instantiate_data_config(name: str, data_dir: Path, **overrides: Any) -> Any:
    """Instantiate ``conf/data/<name>.yaml``'s loader with ``paths.data_dir = data_dir``, the way
    the Hydra app resolves it (``data.root`` interpolations included); ``overrides`` patch
    ``data.loader`` keys."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"paths": {"data_dir": str(data_dir)}, "data": OmegaConf.load(CONF_DATA / f"{name}.yaml")})
    for key, value in overrides.items():
        cfg.data.loader[key] = value
    return instantiate(cfg.data.loader)
