"""Predict the emotion of new recordings with a head saved by ``evaluate.py save_model=true``.

    python predict.py model=outputs/evaluate/runs/<time>/model inputs=[a.wav,recordings/]
"""

import os

os.environ.setdefault("PROJECT_ROOT", os.path.dirname(os.path.abspath(__file__)))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    from deeptalk_ser.runs.predict import run
    from deeptalk_ser.utils.jobs import run_job

    run_job("predict.py", lambda: run(cfg))


if __name__ == "__main__":
    main()
