"""A trained model as a file an application loads: a torch.export program (.pt2), ONNX, TorchScript, or
resnetlab's own weights format, with a dynamic batch size: `resnetlab.export(...)` and `resnetlab export`.

By default the program takes what an application has, RGB images as float in [0, 1] (N x 3 x size x size),
and applies the model's own normalization inside (for the paper's CIFAR nets, the 3x32x32 mean image, which
exists nowhere but in the checkpoint); preprocessing=False exports the bare network. Class names, input size
and normalization travel in the file: ONNX metadata_props, the .pt2 extra file resnetlab.json.

Every export is loaded back and compared with PyTorch at batch sizes 1 and 7: the .pt2 program with
torch.export.load, the ONNX file in onnxruntime (when installed). ONNX goes through the current exporter
(torch.onnx.export(dynamo=True)) and falls back to the legacy one, saying so. TorchScript, deprecated in
PyTorch, is kept behind format="torchscript".
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from resnetlab.data.download import file_digest
from resnetlab.errors import UserError
from resnetlab.files import atomic_write
from resnetlab.inference.load import LoadedModel, load_model
from resnetlab.inference.weight_export import export_weights
from resnetlab.models.safetensors_files import WEIGHTS_FILE
from resnetlab.runtime.messages import say
from resnetlab.runtime.outputs import check_output

FORMATS = {"pt2": "torch.export program", "onnx": "ONNX", "torchscript": "TorchScript (deprecated)",
           "weights": "resnetlab weights (a checkpoint without optimizer state)",
           "safetensors": "safetensors weights (with resnetlab's record in the header)",
           "folder": "a model folder (config.json + model.safetensors + README.md, the Hugging Face Hub's layout)"}
WEIGHT_FORMATS = ("weights", "safetensors", "folder")
TOLERANCE = 1e-4  # largest |export - PyTorch| accepted on random input


def export(out: str | Path, *, checkpoint: str | None = None, model: str | None = None, weights: str | None = None,
           weights_dir: str | None = None, style: str | None = None, format: str | None = None,
           preprocessing: bool = True, check: bool = True, force: bool = False) -> dict:
    """Write the model (a checkpoint, or a network with weights) to `out` in `format` (default: from the
    suffix, .pt2 or .onnx); returns what was written: {"out", "format", "model", "input", "max_difference",
    "sha256" (weights format)}. The file never replaces one of its inputs, nor another file unless force."""
    out = Path(out)
    inputs = [Path(p) for p in (checkpoint, weights) if p and not str(p).startswith("hf-hub:")]
    if format != "folder":
        check_output("--out", out, inputs, force)  # first: never an input, whatever the format
    fmt = _format(out, format)
    folder = out / WEIGHTS_FILE if fmt == "folder" else out  # a model folder: its weights file is the check's
    _check_out(folder, fmt, inputs, force)  # before the (slow) load
    loaded = load_model(checkpoint, model, weights, weights_dir=weights_dir, style=style)
    _check_out(folder, fmt, [loaded.source] if loaded.source else [], force)  # named weights: their file
    result = {"out": str(out), "format": fmt, "model": loaded.name,
              **({"weights": f"averaged ({loaded.averaged})"} if loaded.averaged else {})}
    if fmt in WEIGHT_FORMATS:
        size = export_weights(loaded, out, fmt)
        return {**result, "bytes": size, "sha256": file_digest(folder, "sha256")}
    exporter = {"pt2": export_pt2, "onnx": export_onnx, "torchscript": export_torchscript}[fmt]
    net, meta = exported_network(loaded, preprocessing), metadata(loaded, preprocessing)
    try:
        run = exporter(net, _example(loaded, 2, preprocessing), meta, out)
    except ImportError:
        raise UserError(f"--format {fmt} needs the onnx and onnxruntime packages: pip install 'resnetlab[export]'") from None
    result["input"] = meta["resnetlab.input"]
    if check:
        result["max_difference"] = diff = worst_difference(net, [_example(loaded, n, preprocessing) for n in (1, 7)], run)
        if diff > TOLERANCE:
            raise UserError(f"the {FORMATS[fmt]} export of {loaded.name} differs from PyTorch by {diff:.2e}")
    return result


def _check_out(out: Path, fmt: str, inputs: list[Path], force: bool) -> None:
    """check_output's rule; for a model folder, on its weights file where the folder exists, else on the folder
    (made when the model has loaded)."""
    if fmt == "folder" and not out.parent.exists():
        check_output("--out", out.parent, inputs, force)
    elif fmt == "folder" and not out.parent.is_dir():
        raise UserError(f"--out {out.parent}: a file is there; a model folder needs a folder")
    else:
        check_output("--out", out, inputs, force)


SUFFIXES = {".pt2": "pt2", ".onnx": "onnx", ".safetensors": "safetensors"}


def _format(out: Path, fmt: str | None) -> str:
    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    fmt = fmt or SUFFIXES.get(out.suffix.lower())
    if fmt is None:
        raise UserError(f"--out {out}: name it .pt2, .onnx or .safetensors, or give --format")
    clash = SUFFIXES.get(out.suffix.lower())
    if clash is not None and clash != fmt:
        raise UserError(f"--out {out} is named like a {FORMATS[clash]} file but --format {fmt} writes a "
                        f"{FORMATS[fmt]}; name it to match")
    return fmt


class Preprocessed(nn.Module):
    """The network behind its own normalization: RGB float in [0, 1] in, logits out."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", std.float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def exported_network(loaded: LoadedModel, preprocessing: bool) -> nn.Module:
    if not preprocessing:
        return loaded.model
    return Preprocessed(loaded.model, loaded.normalization.mean, loaded.normalization.std).eval()


def metadata(loaded: LoadedModel, preprocessing: bool) -> dict[str, str]:
    """What a user of the file needs to feed it and read its output, as strings (ONNX metadata_props)."""
    norm = loaded.normalization
    per_channel = norm.mean.numel() == 3
    size = loaded.input["size"]
    return {
        "resnetlab.model": loaded.name,
        "resnetlab.classes": json.dumps(loaded.classes or []),
        "resnetlab.input": (f"N x 3 x {size} x {size} RGB float in [0, 1], normalized inside" if preprocessing else
                            f"N x 3 x {size} x {size}, already normalized ({norm.kind})"),
        "resnetlab.resize": str(loaded.input["resize"]),
        "resnetlab.normalization": json.dumps({"kind": norm.kind,
                                               "mean": norm.mean.flatten().tolist() if per_channel else "per-pixel mean image (inside)",
                                               "std": norm.std.flatten().tolist()}),
        "resnetlab.weights": f"averaged ({loaded.averaged})" if loaded.averaged else "trained",
    }


def _example(loaded: LoadedModel, n: int = 2, preprocessing: bool = False) -> torch.Tensor:
    size = loaded.input["size"]
    g = torch.Generator().manual_seed(n)
    return torch.rand(n, 3, size, size, generator=g) if preprocessing else torch.randn(n, 3, size, size, generator=g)


BATCH = {"x": {0: torch.export.Dim.DYNAMIC}}  # the batch dimension stays free in every format


def export_pt2(net: nn.Module, example: torch.Tensor, meta: dict[str, str], out: Path) -> Callable[[torch.Tensor], np.ndarray]:
    program = torch.export.export(net, (example,), dynamic_shapes=BATCH)
    extra = {"resnetlab.json": json.dumps(meta)}
    # Serialized in memory, then written by Python: torch.export.save writing a file aborts the whole process
    # (exit 134, no message) when the disk fills; a Python write fails with an error atomic_write explains.
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files=extra)
    atomic_write(out, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    module = torch.export.load(str(out)).module()
    return lambda x: module(x).detach().numpy()


def export_onnx(net: nn.Module, example: torch.Tensor, meta: dict[str, str], out: Path) -> Callable[[torch.Tensor], np.ndarray]:
    def write(tmp: Path, dynamo: bool) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dynamo:
                # One self-contained file (a ResNet is far below ONNX's 2 GB limit): the default writes the
                # weights beside it, named after the temporary file, and an .onnx copied alone then fails.
                torch.onnx.export(net, (example,), str(tmp), input_names=["images"],
                                  output_names=["logits"], dynamic_shapes=BATCH, dynamo=True, external_data=False)
            else:
                torch.onnx.export(net, (example,), str(tmp), input_names=["images"],
                                  output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                                  dynamo=False)
        import onnx  # optional: the export extra installs it; only ONNX exports need it

        model = onnx.load(str(tmp))
        for key, value in meta.items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(tmp))

    try:
        atomic_write(out, lambda tmp: write(tmp, dynamo=True))
    except Exception as e:  # noqa: BLE001 - the new exporter needs onnxscript and a recent torch
        say(f"the current ONNX exporter failed ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); "
            "using the legacy TorchScript-based exporter")
        atomic_write(out, lambda tmp: write(tmp, dynamo=False))
    import onnxruntime as ort  # optional, as onnx

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return lambda x: session.run(["logits"], {"images": x.numpy()})[0]


def export_torchscript(net: nn.Module, example: torch.Tensor, meta: dict[str, str], out: Path) -> Callable[[torch.Tensor], np.ndarray]:
    warnings.warn("TorchScript is deprecated in PyTorch; --format pt2 is its replacement", FutureWarning, stacklevel=2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The network has no data-dependent control flow, so a trace is the whole program.
        traced = torch.jit.trace(net, example)
    buffer = io.BytesIO()  # in memory first, as export_pt2 does
    torch.jit.save(traced, buffer, _extra_files={"resnetlab.json": json.dumps(meta)})
    atomic_write(out, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(out))
    return lambda x: module(x).detach().numpy()


def worst_difference(net: nn.Module, examples: list[torch.Tensor], run: Callable[[torch.Tensor], np.ndarray]) -> float:
    """Largest |export - PyTorch| over `examples`."""
    worst = 0.0
    for x in examples:
        with torch.no_grad():
            ref = net(x).numpy()
        worst = max(worst, float(np.abs(run(x) - ref).max()))
    return worst
