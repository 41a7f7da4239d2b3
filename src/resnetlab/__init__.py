"""resnetlab: the networks, recipes and experiments of "Deep Residual Learning for Image Recognition"."""

from resnetlab.errors import UserError
from resnetlab.models import create_model, list_models, load_weights

__version__ = "0.1.0"
__all__ = ["UserError", "create_model", "list_models", "load_weights", "__version__"]
