"""`resnetlab export`: a trained model as ONNX or TorchScript, with a dynamic batch size.

The ONNX file is checked in onnxruntime against PyTorch at two batch sizes when onnxruntime is installed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from resnetlab.cli.main import Parser
from resnetlab.cli.options import add_model_source
from resnetlab.engine.checkpoint import atomic_write
from resnetlab.engine.inference import LoadedModel, load_model
from resnetlab.errors import UserError


def build_parser() -> Parser:
    p = Parser(prog="resnetlab export", description=__doc__.strip().splitlines()[0].split(": ", 1)[1],
               epilog="example: resnetlab export --checkpoint runs/r20/best.pt --format onnx --out r20.onnx")
    add_model_source(p)
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--out", required=True, help="output file (.onnx or .pt)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--force", action="store_true", help="replace an existing --out file (never the input)")
    return p


def check_out(out: Path, inputs: list[str], force: bool) -> Path:
    """Refuse an --out that is the input, a folder, an existing file without --force, or unwritable."""
    if any(out.resolve() == Path(i).resolve() for i in inputs):
        raise UserError(f"--out {out} is the file being exported; choose another name")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name, e.g. {out / 'model.onnx'}")
    if out.exists() and not force:
        raise UserError(f"--out {out} exists; add --force to replace it")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: the folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise UserError(f"--out {out}: cannot write in {out.parent}")
    return out


def export_onnx(loaded: LoadedModel, out: Path) -> None:
    size = loaded.input["size"]
    example = torch.randn(2, 3, size, size)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(loaded.model, (example,), str(tmp), input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)

    atomic_write(out, write)


def check_onnx(loaded: LoadedModel, path: Path, batch_sizes: tuple[int, ...] = (1, 7)) -> float:
    """Largest |onnxruntime - PyTorch| over random inputs at each batch size."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    size, worst = loaded.input["size"], 0.0
    for n in batch_sizes:
        x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            ref = loaded.model(x).numpy()
        got = session.run(["logits"], {"images": x.numpy()})[0]
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = check_out(Path(args.out), [p for p in (args.checkpoint, args.weights) if p], args.force)
    loaded = load_model(args.checkpoint, args.model, args.weights, weights_dir=args.weights_dir)
    if args.format == "torchscript":
        size = loaded.input["size"]
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The network has no data-dependent control flow, so a trace is the whole program.
            traced = torch.jit.trace(loaded.model, torch.randn(2, 3, size, size))
        atomic_write(out, lambda tmp: traced.save(str(tmp)))
        print(f"wrote {out} (TorchScript, {loaded.name})")
        return 0
    export_onnx(loaded, out)
    print(f"wrote {out} (ONNX, {loaded.name}, input 'images' N x 3 x {loaded.input['size']} x {loaded.input['size']})")
    if not args.no_check:
        try:
            diff = check_onnx(loaded, out)
        except ImportError:
            print("onnxruntime is not installed: not checked (pip install 'resnetlab[export]')")
            return 0
        print(f"onnxruntime matches PyTorch at batch sizes 1 and 7: max abs difference {diff:.2e}")
        if diff > 1e-4:
            raise UserError(f"the ONNX export of {loaded.name} differs from PyTorch by {diff:.2e}")
    return 0
