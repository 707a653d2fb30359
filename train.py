"""Pretrain the DeepTalk speaker encoder on speaker labels.

    python train.py encoder=deeptalk data=speechocean762 loss=ge2e
    python train.py trainer=ddp trainer.devices=2          # DDP (gloo on CPU, nccl on GPU)
    python train.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt   # exact resume
"""

import os

os.environ.setdefault("PROJECT_ROOT", os.path.dirname(os.path.abspath(__file__)))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from deeptalk_ser.runs.train import train
    from deeptalk_ser.utils.jobs import objective, run_job

    return objective(run_job("train.py", lambda: train(cfg)), "best_val_eer")


if __name__ == "__main__":
    main()
