"""`resnetlab export`: a trained model as a torch.export program (.pt2) or ONNX, with a dynamic batch size.

Every export is loaded back and compared with PyTorch at batch sizes 1 and 7: the .pt2 program with
torch.export.load, the ONNX file in onnxruntime (when installed). ONNX goes through the current exporter
(torch.onnx.export(dynamo=True)) and falls back to the legacy one, saying so. TorchScript, deprecated in
PyTorch, is kept behind --format torchscript.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from resnetlab.cli.main import Parser
from resnetlab.cli.options import add_model_source, check_output
from resnetlab.engine.checkpoint import atomic_write
from resnetlab.engine.inference import LoadedModel, load_model
from resnetlab.errors import UserError

FORMATS = {"pt2": "torch.export program", "onnx": "ONNX", "torchscript": "TorchScript (deprecated)"}
TOLERANCE = 1e-4  # largest |export - PyTorch| accepted on random input


def build_parser() -> Parser:
    p = Parser(prog="resnetlab export", description=__doc__.strip().splitlines()[0].split(": ", 1)[1],
               epilog="example: resnetlab export --checkpoint runs/r20/best.pt --format pt2 --out r20.pt2")
    add_model_source(p)
    p.add_argument("--format", choices=list(FORMATS),
                   help="pt2 (torch.export, load with torch.export.load), onnx, or torchscript (deprecated); "
                        "default: from --out's suffix (.pt2 or .onnx)")
    p.add_argument("--out", required=True, help="output file (.pt2, .onnx or .pt)")
    p.add_argument("--no-check", action="store_true", help="skip loading the export back and comparing it")
    p.add_argument("--force", action="store_true", help="replace an existing --out file (never the input)")
    return p


def _example(loaded: LoadedModel, n: int = 2) -> torch.Tensor:
    size = loaded.input["size"]
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(n))


BATCH = {"x": {0: torch.export.Dim.DYNAMIC}}  # the batch dimension stays free in every format


def export_pt2(loaded: LoadedModel, out: Path) -> Callable[[torch.Tensor], np.ndarray]:
    program = torch.export.export(loaded.model, (_example(loaded),), dynamic_shapes=BATCH)
    atomic_write(out, lambda tmp: torch.export.save(program, str(tmp)))
    module = torch.export.load(str(out)).module()
    return lambda x: module(x).detach().numpy()


def export_onnx(loaded: LoadedModel, out: Path) -> Callable[[torch.Tensor], np.ndarray]:
    def write(tmp: Path, dynamo: bool) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dynamo:
                # One self-contained file (a ResNet is far below ONNX's 2 GB limit): the default writes the
                # weights beside it, named after the temporary file, and an .onnx copied alone then fails.
                torch.onnx.export(loaded.model, (_example(loaded),), str(tmp), input_names=["images"],
                                  output_names=["logits"], dynamic_shapes=BATCH, dynamo=True, external_data=False)
            else:
                torch.onnx.export(loaded.model, (_example(loaded),), str(tmp), input_names=["images"],
                                  output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                                  dynamo=False)

    try:
        atomic_write(out, lambda tmp: write(tmp, dynamo=True))
    except Exception as e:  # noqa: BLE001 - the new exporter needs onnxscript and a recent torch
        print(f"the current ONNX exporter failed ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); "
              "using the legacy TorchScript-based exporter")
        atomic_write(out, lambda tmp: write(tmp, dynamo=False))
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return lambda x: session.run(["logits"], {"images": x.numpy()})[0]


def export_torchscript(loaded: LoadedModel, out: Path) -> Callable[[torch.Tensor], np.ndarray]:
    warnings.warn("TorchScript is deprecated in PyTorch; --format pt2 is its replacement", FutureWarning, stacklevel=2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The network has no data-dependent control flow, so a trace is the whole program.
        traced = torch.jit.trace(loaded.model, _example(loaded))
    atomic_write(out, lambda tmp: traced.save(str(tmp)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(out))
    return lambda x: module(x).detach().numpy()


def worst_difference(loaded: LoadedModel, run: Callable[[torch.Tensor], np.ndarray],
                     batch_sizes: tuple[int, ...] = (1, 7)) -> float:
    """Largest |export - PyTorch| over random inputs at each batch size."""
    worst = 0.0
    for n in batch_sizes:
        x = _example(loaded, n)
        with torch.no_grad():
            ref = loaded.model(x).numpy()
        worst = max(worst, float(np.abs(run(x) - ref).max()))
    return worst


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    inputs = [Path(p) for p in (args.checkpoint, args.weights) if p]
    check_output("--out", out, inputs, args.force)  # before the (possibly slow) load
    fmt = args.format or {".pt2": "pt2", ".onnx": "onnx"}.get(out.suffix)
    if fmt is None:
        raise UserError(f"--out {out}: name it .pt2 or .onnx, or give --format")
    exporter = {"pt2": export_pt2, "onnx": export_onnx, "torchscript": export_torchscript}[fmt]
    loaded = load_model(args.checkpoint, args.model, args.weights, weights_dir=args.weights_dir, style=args.style)
    check_output("--out", out, [loaded.source], args.force)  # named weights: the file they resolved to
    try:
        run = exporter(loaded, out)
    except ImportError:
        print("onnxruntime is not installed: the ONNX file was written but not checked (pip install 'resnetlab[export]')")
        return 0
    size = loaded.input["size"]
    print(f"wrote {out} ({FORMATS[fmt]}, {loaded.name}, input N x 3 x {size} x {size}, N free)")
    if not args.no_check:
        diff = worst_difference(loaded, run)
        print(f"loaded back, it matches PyTorch at batch sizes 1 and 7: max abs difference {diff:.2e}")
        if diff > TOLERANCE:
            raise UserError(f"the {FORMATS[fmt]} export of {loaded.name} differs from PyTorch by {diff:.2e}")
    return 0
