"""Compare finished emotion runs by a paired speaker-level test (the test a sweep's summary runs).

    python compare.py runs=[outputs/evaluate/runs/A,outputs/evaluate/runs/B]
"""

import os

os.environ.setdefault("PROJECT_ROOT", os.path.dirname(os.path.abspath(__file__)))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="compare")
def main(cfg: DictConfig) -> None:
    from deeptalk_ser.runs.compare import run
    from deeptalk_ser.utils.jobs import run_job

    run_job("compare.py", lambda: run(cfg))


if __name__ == "__main__":
    main()
