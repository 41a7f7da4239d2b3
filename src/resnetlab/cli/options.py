"""Option groups that several subcommands share, declared once."""

from __future__ import annotations

import argparse

DEVICES = ("auto", "cpu", "cuda")


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


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=DEVICES, help="auto: CUDA when available, else the CPU")
