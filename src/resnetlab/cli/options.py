"""Option groups that several subcommands share, declared once."""

from __future__ import annotations

import argparse
import math

from resnetlab.runtime.devices import DEVICES


def add_model_source(p: argparse.ArgumentParser, weights_help: str = "foreign weights: a torchvision state dict "
                     "or an akamaster CIFAR checkpoint", ensemble: bool = False) -> None:
    """--checkpoint (a resnetlab run's), or --model with --weights (anyone's); with `ensemble`, --checkpoint
    may be given several times."""
    g = p.add_argument_group("the model", "either --checkpoint, or --model with --weights")
    g.add_argument("--checkpoint", action="append" if ensemble else "store",
                   help="a resnetlab checkpoint (RUN_DIR/last.pt or best.pt); it carries the network, class names "
                        "and normalization" + ("; several: an ensemble, their softmax averaged (Table 5)" if ensemble else ""))
    g.add_argument("--model", help="network name (see `resnetlab models`), with --weights")
    g.add_argument("--weights", help=weights_help + "; or the name of published weights (`resnetlab models "
                   "--weights`), e.g. akamaster, torchvision")
    g.add_argument("--weights-dir", help="where named weights are looked up and downloaded to (default: "
                   "$RESNETLAB_WEIGHTS, else the cache's weights/)")
    g.add_argument("--style", choices=("paper", "torchvision"),
                   help="the network the weights were trained as, where the file cannot say: ResNet-50/101/152 "
                        "'paper' (stride on the first 1x1 conv) or 'torchvision' (v1.5, stride on the 3x3); "
                        "known files (torchvision's, resnetlab checkpoints) carry it")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=DEVICES, help="auto: CUDA when available, else the CPU")


def strict_json(obj):
    """`obj` with NaN and infinities as null, so that --json output is JSON (Python's json writes bare NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj
