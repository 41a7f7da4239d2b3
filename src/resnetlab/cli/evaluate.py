"""`resnetlab evaluate`: top-1/top-5 error, loss and image count of a model on a dataset split."""

from __future__ import annotations

import json


from resnetlab.cli.main import Parser
from resnetlab.cli.options import add_device, add_model_source
from resnetlab.data import DeviceLoader, open_dataset
from resnetlab.data.sources import PAPER_HOLDOUT, evaluation_name, select_split
from resnetlab.data.arrays import ArrayDataset
from resnetlab.data.imagenet import eval_loader
from resnetlab.engine.evaluate import evaluate
from resnetlab.engine.inference import load_model
from resnetlab.engine.trainer import resolve_device
from resnetlab.errors import UserError


def build_parser() -> Parser:
    p = Parser(prog="resnetlab evaluate", description=__doc__.strip().split(": ", 1)[1],
               epilog="examples: resnetlab evaluate --checkpoint runs/r20/best.pt --data ../shared/data/cifar10-jpeg\n"
                      "  resnetlab evaluate --model cifar_resnet56 --weights resnet56-4bfd9763.th --data DIR --split train")
    add_model_source(p)
    p.add_argument("--data", required=True, help="dataset folder, CIFAR tarball, or cifar10/cifar100")
    p.add_argument("--split", default="auto", choices=["auto", "train", "val", "test", "holdout"],
                   help="auto: the run's validation split for a checkpoint, else test, val, or train")
    p.add_argument("--ten-crop", action="store_true", help="the paper's 10-crop testing (image-folder data)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers for image-folder data")
    add_device(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size <= 0:
        raise UserError("--batch-size must be positive")
    ds = open_dataset(args.data)
    loaded = load_model(args.checkpoint, args.model, args.weights, num_classes=len(ds.classes))
    if loaded.classes is not None and loaded.classes != ds.classes:
        raise UserError(f"{args.data} has classes {ds.classes[:5]}..., the checkpoint {loaded.classes[:5]}...")
    recorded = (loaded.checkpoint or {}).get("split", {})
    split = evaluation_name(ds, args.split, recorded.get("val"))
    data = select_split(ds, split, recorded.get("holdout", PAPER_HOLDOUT))
    device = resolve_device(args.device)
    model = loaded.model.to(device)
    if isinstance(data, ArrayDataset):
        if args.ten_crop:
            raise UserError("--ten-crop is for image-folder (ImageNet-style) data")
        batches = DeviceLoader(data.images, data.labels, args.batch_size, device, loaded.normalization, augment=False)
    else:
        batches = eval_loader(data, args.batch_size, args.workers, ten_crop=args.ten_crop)
    result = {"model": loaded.name, "data": args.data, "split": split, **evaluate(model, batches)}
    result["top1_accuracy"] = 1 - result["top1_error"]
    best = (loaded.checkpoint or {}).get("best")
    if best and best.get("chosen_on") == split:
        # The honest caveat of best.pt: an error on the split that chose the checkpoint is optimistic.
        result["note"] = (f"this checkpoint was chosen as the best of its run on this {split} split, so its error "
                          "here is optimistic; report last.pt's (final-iteration) error instead")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{loaded.name} on {args.data} [{split}, {result['count']:,} images]: top-1 error "
              f"{result['top1_error']:.2%} (accuracy {result['top1_accuracy']:.2%}), top-5 error "
              f"{result['top5_error']:.2%}, loss {result['loss']:.4f}")
        if "note" in result:
            print(f"note: {result['note']}")
    return 0


