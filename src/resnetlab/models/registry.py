"""Every network of the paper by name, as a table: the ImageNet nets one factory each, the CIFAR nets by family
(`@family`: which names, their input size and recipe). No weights here: models/factory.py adds them."""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Callable

from resnetlab.errors import UserError
from resnetlab.models.resnet import BasicBlock, Bottleneck, ResNet, Shortcut, Style

_REGISTRY: dict[str, Callable[..., ResNet]] = {}


@dataclass(frozen=True)
class Family:
    """Networks that share how they are built and fed: a name pattern (its group 1 the depth), what a name
    builds, and the input, recipe and normalization they were made for. `small_input`: 32x32 images (the CIFAR
    nets), trained with the per-pixel mean; else ImageNet's 224 crop of a 256 resize and its mean/std."""
    pattern: re.Pattern
    build: Callable[..., ResNet]  # (depth, **options) -> network
    small_input: bool
    recipe: str
    listed_depths: tuple[int, ...] = ()  # the depths list_models() names (any matching depth can be built)
    prefix: str = ""

    @property
    def input(self) -> dict[str, int]:
        return {"size": 32, "resize": 32} if self.small_input else {"size": 224, "resize": 256}


FAMILIES: list[Family] = []


def family(pattern: str, *, small_input: bool, recipe: str, listed_depths: tuple[int, ...] = ()) -> Callable:
    """Register a family of networks whose names match `pattern` (group 1: the depth): one decorator on the
    function that builds one of them from its depth. A new kind of network is one file and this decorator."""
    def register_family(build: Callable[..., ResNet]) -> Callable[..., ResNet]:
        FAMILIES.append(Family(re.compile(pattern + "$"), build, small_input, recipe, tuple(listed_depths),
                               pattern.split("(")[0]))
        return build

    return register_family


def family_of(name: str) -> Family | None:
    """The family a network name belongs to (the ImageNet nets by their registered names), or None."""
    if name in _REGISTRY:
        return IMAGENET_FAMILY
    return next((f for f in FAMILIES if f.pattern.match(name)), None)


def register(fn: Callable[..., ResNet]) -> Callable[..., ResNet]:
    _REGISTRY[fn.__name__] = fn
    return fn


def _imagenet(
    block: type[BasicBlock] | type[Bottleneck],
    layers: list[int],
    *,
    residual: bool = True,
    num_classes: int = 1000,
    shortcut: Shortcut | None = None,
    style: Style = "paper",
    zero_init_residual: bool = False,
) -> ResNet:
    if style not in ("paper", "torchvision"):
        raise UserError(f"style must be 'paper' or 'torchvision', not {style!r}")
    if shortcut is None:
        # Bottleneck nets use B (Sec. 3.3). For 18/34 the paper's plain-vs-residual comparison
        # (Table 2, Fig. 4) uses A, which keeps them parameter-for-parameter equal to plain-18/34;
        # torchvision's 18/34 use B, so style="torchvision" does too.
        shortcut = "A" if block is BasicBlock and style == "paper" else "B"
    return ResNet(
        block, layers, imagenet=True, num_classes=num_classes, shortcut=shortcut, residual=residual,
        style=style, zero_init_residual=zero_init_residual,
    )


IMAGENET_FAMILY = Family(re.compile(r"(resnet|plain)(\d+)$"), lambda depth, **kw: _REGISTRY[f"resnet{depth}"](**kw),
                         small_input=False, recipe="imagenet-paper")


# Table 6 and Fig. 6 of the paper; any other 6n+2 depth is built on request (cifar_resnet8, ...).
@family(r"cifar_resnet(\d+)", small_input=True, recipe="cifar-paper", listed_depths=(20, 32, 44, 56, 110, 1202))
def cifar_resnet(depth: int, **options: Any) -> ResNet:
    return cifar_net(depth, residual=True, **options)


@family(r"cifar_plain(\d+)", small_input=True, recipe="cifar-paper", listed_depths=(20, 32, 44, 56, 110))
def cifar_plain(depth: int, **options: Any) -> ResNet:
    return cifar_net(depth, residual=False, **options)


def cifar_net(depth: int, *, residual: bool = True, num_classes: int = 10, shortcut: Shortcut = "A",
              zero_init_residual: bool = False, style: Style = "paper") -> ResNet:
    """Sec. 4.2: depth 6n+2, three stages of n basic blocks on 16, 32, 64 filters."""
    if depth < 8 or (depth - 2) % 6:
        raise UserError(f"a CIFAR net has depth 6n+2 with n >= 1 (8, 14, 20, 32, ...), not {depth}")
    n = (depth - 2) // 6
    return ResNet(
        BasicBlock, [n, n, n], imagenet=False, num_classes=num_classes, shortcut=shortcut,
        residual=residual, style=style, zero_init_residual=zero_init_residual,
    )


@register
def resnet18(**kw: Any) -> ResNet: return _imagenet(BasicBlock, [2, 2, 2, 2], **kw)
@register
def resnet34(**kw: Any) -> ResNet: return _imagenet(BasicBlock, [3, 4, 6, 3], **kw)
@register
def resnet50(**kw: Any) -> ResNet: return _imagenet(Bottleneck, [3, 4, 6, 3], **kw)
@register
def resnet101(**kw: Any) -> ResNet: return _imagenet(Bottleneck, [3, 4, 23, 3], **kw)
@register
def resnet152(**kw: Any) -> ResNet: return _imagenet(Bottleneck, [3, 8, 36, 3], **kw)
@register
def plain18(**kw: Any) -> ResNet: return _imagenet(BasicBlock, [2, 2, 2, 2], residual=False, **kw)
@register
def plain34(**kw: Any) -> ResNet: return _imagenet(BasicBlock, [3, 4, 6, 3], residual=False, **kw)



def model_names(pattern: str = "*") -> list[str]:
    """The registered names matching the shell-style `pattern`: the ImageNet nets, then the CIFAR nets."""
    listed = [f"{f.prefix}{d}" for f in FAMILIES for d in f.listed_depths]
    return [n for n in [*_REGISTRY, *listed] if fnmatch.fnmatchcase(n, pattern)]


def is_cifar(name: str) -> bool:
    """Whether `name` is a network for 32x32 images (its family says so)."""
    f = family_of(name)
    return f is not None and f.small_input


def cifar_depth(name: str) -> int | None:
    """The depth of a small-input net's name (cifar_resnet110 -> 110); None for other names."""
    f = family_of(name)
    m = f.pattern.match(name) if f is not None and f.small_input else None
    return int(m.group(1)) if m else None


def model_input(name: str) -> dict[str, int]:
    """The input a network of this name is made for: {"size": crop, "resize": shorter side}."""
    f = family_of(name)
    return f.input if f is not None else IMAGENET_FAMILY.input


def default_recipe(name: str) -> str:
    """The recipe the paper trained `name` with (its family's): Sec. 4.2's for CIFAR nets, Sec. 3.4's else."""
    f = family_of(name)
    return f.recipe if f is not None else IMAGENET_FAMILY.recipe


# Bounds on what a name or a file may ask to be built, so that a typo or a tiny hostile file cannot make a
# network of hundreds of GB: ImageNet-21K has 21,843 classes; the paper's deepest net is ResNet-1202 (19.4M
# parameters; 5,000 layers would be ~80M and need tens of GB of activations at batch 128).
MAX_CLASSES = 100_000
MAX_CIFAR_DEPTH = 5000


def check_name(name: str) -> None:
    """Refuse an unknown network name at once, before any data is read."""
    depth = cifar_depth(name)
    if depth is not None and depth > MAX_CIFAR_DEPTH:
        raise UserError(f"{name}: depth {depth:,} is beyond the {MAX_CIFAR_DEPTH:,} layers resnetlab builds (the "
                        "paper's deepest is cifar_resnet1202)")
    if family_of(name) is not None:
        return
    close = difflib.get_close_matches(name, model_names(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `resnetlab models` lists them"
    raise UserError(f"unknown model {name!r}{hint}")


# The bottleneck nets: "paper" and "torchvision" style have the same tensors (only the stride moves from the
# first 1x1 to the 3x3 conv), so a strict load cannot tell which network a state dict was trained as.
STYLE_AMBIGUOUS = ("resnet50", "resnet101", "resnet152")

MODEL_OPTIONS = ("num_classes", "shortcut", "style", "zero_init_residual")


def check_options(name: Any, options: dict[str, Any]) -> None:
    """Refuse, with the exception type Python users expect, what no network can be built from."""
    if not isinstance(name, str):
        raise TypeError(f"create_model: the network name must be a string such as 'resnet18' or 'cifar_resnet20', "
                        f"not {name!r}")
    unknown = sorted(set(options) - set(MODEL_OPTIONS))
    if unknown:
        raise TypeError(f"create_model: unknown option {unknown[0]!r} (known: {', '.join(MODEL_OPTIONS)})")
    value = options.get("num_classes", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"create_model: num_classes must be a positive whole number, not {value!r}")
    if value > MAX_CLASSES:
        raise UserError(f"num_classes {value:,} is beyond the {MAX_CLASSES:,} classes resnetlab builds a classifier "
                        f"for (ImageNet-21K has 21,843); a file that declares so many is damaged")


def build(name: str, **options: Any) -> ResNet:
    """The network `name`, freshly initialized (no weights): its factory, or its family's for a depth."""
    if name in _REGISTRY:
        return _REGISTRY[name](**options)
    check_name(name)
    check_options(name, options)
    f = family_of(name)
    return f.build(int(f.pattern.match(name).group(1)), **options)
