"""Emotion recognition / detection (and speaker verification) on speaker embeddings.

    python evaluate.py data=emodb encoder=ge2e classifier=svm task=er protocol=loso
    python evaluate.py -m classifier=svm,hierarchical task=er,ed
"""

import os

os.environ.setdefault("PROJECT_ROOT", os.path.dirname(os.path.abspath(__file__)))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    from deeptalk_ser.utils.jobs import objective, run_job

    # the job of this task (conf/task/*.yaml); a failed job of a multirun returns None and the sweep goes on
    results = run_job("evaluate.py", lambda: hydra.utils.get_method(cfg.task.runner)(cfg))
    return objective(results, "ua", "eer")


if __name__ == "__main__":
    main()
