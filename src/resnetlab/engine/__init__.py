from resnetlab.engine.config import RECIPES, TrainConfig, resolve
from resnetlab.engine.evaluate import evaluate
from resnetlab.engine.trainer import TrainingDiverged, train, train_runs

__all__ = ["RECIPES", "TrainConfig", "TrainingDiverged", "evaluate", "resolve", "train", "train_runs"]
