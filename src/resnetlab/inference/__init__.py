"""Using a trained model: load it (a run's checkpoint, named weights or a weights file, with its classes and
preprocessing), score it under the paper's testing protocols, predict, and export it for applications."""

from resnetlab.inference.evaluation import Options, measure
from resnetlab.inference.export import export
from resnetlab.inference.load import LoadedModel, load_model
from resnetlab.inference.predict import expand_folders, predict
from resnetlab.inference.scoring import evaluate

__all__ = ["LoadedModel", "Options", "evaluate", "expand_folders", "export", "load_model", "measure", "predict"]
