"""resnetlab: the networks, recipes and experiments of "Deep Residual Learning for Image Recognition".

The public names are loaded on first use (PEP 562): `resnetlab --help` and `import resnetlab.errors` answer
without importing torch, which costs seconds; `resnetlab.train` and the rest import it when first touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from resnetlab.errors import UserError

__version__ = "0.1.0"
# Each public name and the module it lives in.
_PUBLIC = {
    "RunInterrupted": "resnetlab.api", "TrainingDiverged": "resnetlab.api", "evaluate": "resnetlab.api",
    "export": "resnetlab.api", "load": "resnetlab.api", "predict": "resnetlab.api", "resume": "resnetlab.api",
    "train": "resnetlab.api", "create_model": "resnetlab.models", "list_models": "resnetlab.models",
    "load_weights": "resnetlab.models", "get_weights": "resnetlab.models.pretrained",
}
__all__ = ["UserError", "__version__", *sorted(_PUBLIC)]

if TYPE_CHECKING:  # what type checkers and IDEs see
    from resnetlab.api import RunInterrupted, TrainingDiverged, evaluate, export, load, predict, resume, train
    from resnetlab.models import create_model, list_models, load_weights
    from resnetlab.models.pretrained import get_weights


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'resnetlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
