from resnetlab.engine.config import RECIPES, TrainConfig, resolve
from resnetlab.engine.evaluate import evaluate
from resnetlab.engine.trainer import Trainer, TrainingDiverged, train

__all__ = ["RECIPES", "TrainConfig", "Trainer", "TrainingDiverged", "evaluate", "resolve", "train"]
