"""torch.hub entry points, one per network of `resnetlab models`:

    torch.hub.load("<owner>/resnetlab", "cifar_resnet56", weights="akamaster")
    torch.hub.load("path/to/resnetlab", "resnet50", source="local", style="torchvision", weights="torchvision")

Each takes create_model's options (num_classes, shortcut, style, zero_init_residual) and `weights`, the
name of published weights (`resnetlab models --weights`), checked by sha256; `pretrained=True` is
weights="DEFAULT", as timm and older torchvision spell it.
"""

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent / "src"))  # this checkout's sources

from resnetlab.models import create_model as _create_model  # noqa: E402
from resnetlab.models import list_models as _list_models  # noqa: E402

dependencies = ["torch", "torchvision"]


def _entry(name: str):
    def entry(weights: str | None = None, **options):
        return _create_model(name, weights=weights, **options)  # options include pretrained=True

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"{name} of 'Deep Residual Learning for Image Recognition'; weights= names published weights."
    return entry


for _name in _list_models():
    globals()[_name] = _entry(_name)


def transforms(model: str, weights: str = "DEFAULT"):
    """The preprocessing `model`'s weights were measured with (image -> normalized tensor), as torchvision's
    `weights.transforms()`: torch.hub.load(repo, "transforms", "cifar_resnet20", weights="resnetlab").
    resnetlab's own weights subtract their per-pixel mean (in `.meta["normalization"]`), not ImageNet's."""
    from resnetlab.models.pretrained import get_weights

    return get_weights(model, weights).transforms()
