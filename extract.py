"""Prepare a corpus manifest and extract (or reuse) its embedding store.

    python extract.py data=emodb encoder=ge2e
"""

import os

os.environ.setdefault("PROJECT_ROOT", os.path.dirname(os.path.abspath(__file__)))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="extract")
def main(cfg: DictConfig) -> None:
    from deeptalk_ser.runs.extract import run
    from deeptalk_ser.utils.jobs import run_job

    run_job("extract.py", lambda: run(cfg))


if __name__ == "__main__":
    main()
