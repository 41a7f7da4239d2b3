"""Training: the settings and recipes, the learning-rate schedules, the loop (loop.py) and its step (step.py), a
run's books and folder, the fast path and its self-check, and torchrun. `train(cfg)` is the whole of it."""

from resnetlab.training.config import RECIPES, TrainConfig, configure, resolve
from resnetlab.training.loop import RunInterrupted, train, train_runs
from resnetlab.training.resumption import load_run_config, resume_configs, seed_configs
from resnetlab.errors import TrainingDiverged

__all__ = ["RECIPES", "RunInterrupted", "TrainConfig", "TrainingDiverged", "configure", "load_run_config", "resolve",
           "resume_configs", "seed_configs", "train", "train_runs"]
