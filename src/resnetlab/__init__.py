"""resnetlab: the networks, recipes and experiments of "Deep Residual Learning for Image Recognition"."""

from resnetlab.api import RunInterrupted, TrainingDiverged, evaluate, export, load, predict, resume, train
from resnetlab.errors import UserError
from resnetlab.models import create_model, list_models, load_weights
from resnetlab.models.pretrained import get_weights

__version__ = "0.1.0"
__all__ = ["RunInterrupted", "TrainingDiverged", "UserError", "create_model", "evaluate", "export", "get_weights", "list_models", "load", "load_weights", "predict",
           "resume", "train", "__version__"]
