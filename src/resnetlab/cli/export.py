"""`resnetlab export`: a trained model as a torch.export program (.pt2) or ONNX, with a dynamic batch size, or its
weights as safetensors or a model folder.

By default the program takes what an application has, RGB images as float in [0, 1] (N x 3 x size x size),
and applies the model's own normalization inside; --no-preprocessing exports the bare network. Class names,
input size and normalization travel in the file. Every export is loaded back and compared with PyTorch
(resnetlab.inference.export, also `resnetlab.export(...)` in Python).
"""

from __future__ import annotations

from resnetlab.cli.main import Parser
from resnetlab.cli.options import add_model_source
from resnetlab.inference.export import FORMATS, WEIGHT_FORMATS, export


def build_parser() -> Parser:
    p = Parser(prog="resnetlab export", description=" ".join(__doc__.strip().split("\n\n")[0].split()).split(": ", 1)[1],
               epilog="example: resnetlab export --checkpoint runs/r20/best.pt --format pt2 --out r20.pt2")
    add_model_source(p)
    p.add_argument("--format", choices=list(FORMATS),
                   help="pt2 (torch.export, load with torch.export.load), onnx, torchscript (deprecated), or "
                        "weights (the model, its classes, input and normalization, without optimizer state: usable "
                        "as --checkpoint), safetensors (the same in a file that cannot carry code; what resnetlab "
                        "ships as named weights, and timm and the Hugging Face Hub read), or folder (config.json + "
                        "model.safetensors + README.md: a model folder for the Hub, and for timm where timm has the "
                        "network); default: from --out's suffix (.pt2, .onnx or .safetensors)")
    p.add_argument("--out", required=True, help="output file (.pt2, .onnx, .safetensors or .pt), or folder")
    p.add_argument("--no-check", action="store_true", help="skip loading the export back and comparing it")
    p.add_argument("--force", action="store_true", help="replace an existing --out file (never the input)")
    p.add_argument("--no-preprocessing", action="store_true",
                   help="export the bare network, which expects normalized input, instead of one taking RGB in [0, 1]")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    r = export(args.out, checkpoint=args.checkpoint, model=args.model, weights=args.weights,
               weights_dir=args.weights_dir, style=args.style, format=args.format,
               preprocessing=not args.no_preprocessing, check=not args.no_check, force=args.force)
    weights = f", {r['weights']} weights" if "weights" in r else ""
    if r["format"] in WEIGHT_FORMATS:
        print(f"wrote {r['out']} ({FORMATS[r['format']]}, {r['model']}{weights}, {r['bytes'] / 1e6:.1f} MB, "
              f"sha256 {r['sha256']})")
        return 0
    print(f"wrote {r['out']} ({FORMATS[r['format']]}, {r['model']}{weights}); input: {r['input']}, N free; class names, "
          "input size and normalization are in the file")
    if "max_difference" in r:
        print(f"loaded back, it matches PyTorch at batch sizes 1 and 7: max abs difference {r['max_difference']:.2e}")
    return 0
