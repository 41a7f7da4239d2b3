"""Evaluation as a library function: `resnetlab evaluate` and `resnetlab.evaluate()` both call `measure`
with typed options; it measures a model (or an ensemble) on a dataset split under one of the paper's
testing protocols, and writes the plot and per-image predictions asked for."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from resnetlab.data import DeviceLoader, open_dataset
from resnetlab.data.arrays import ArrayDataset
from resnetlab.data.imagenet import eval_loader
from resnetlab.data.sources import PAPER_HOLDOUT, SMALL_IMAGE, content_digest, evaluation_name, select_split
from resnetlab.errors import UserError
from resnetlab.files import atomic_write
from resnetlab.inference.load import load_model
from resnetlab.inference.scoring import evaluate
from resnetlab.models import pretrained
from resnetlab.runtime import memory
from resnetlab.runtime.devices import resolve_device
from resnetlab.runtime.figures import pyplot, save_figure
from resnetlab.runtime.outputs import check_output, inert_cell, printable

PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def check_outputs(o: "Options") -> None:
    """plot and save_predictions: two different new files, none of them an input, outside the dataset."""
    if o.plot and o.save_predictions and Path(o.plot).resolve() == Path(o.save_predictions).resolve():
        raise UserError(f"--plot and --save-predictions both name {o.plot}; give two files")
    inputs = [Path(p) for p in [*o.checkpoints, o.weights] if p]
    protected = Path(o.data) if Path(o.data).is_dir() else None
    if o.plot:
        check_output("--plot", Path(o.plot), inputs, o.force, protected, PLOT_SUFFIXES)
    if o.save_predictions:
        check_output("--save-predictions", Path(o.save_predictions), inputs, o.force, protected, (".csv",))


def per_class(confusion: torch.Tensor, classes: list[str]) -> list[dict]:
    counts = confusion.sum(1)
    return [{"class": printable(name), "count": int(n), "accuracy": (int(confusion[i, i]) / int(n)) if n else None}
            for i, (name, n) in enumerate(zip(classes, counts))]


def plot_confusion(confusion: torch.Tensor, classes: list[str], title: str, path: Path) -> None:
    plt = pyplot()
    n = len(classes)
    rates = confusion.double() / confusion.sum(1, keepdim=True).clamp_min(1)
    fig, ax = plt.subplots(figsize=(max(5, n * 0.5), max(4.5, n * 0.45)))
    image = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 50:  # names beyond that are unreadable
        names = [printable(c).replace("$", r"\$") for c in classes]  # a `$` would start matplotlib's mathtext
        ax.set_xticks(range(n), names, rotation=90)
        ax.set_yticks(range(n), names)
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted class", ylabel="true class")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    save_figure(plt, fig, title, path)


def write_predictions(path: Path, result: dict, names: list[str], items: list[str]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            k = len(result["predictions"][0][1]) if result["predictions"] else 0
            out.writerow(["item", "true_class", *[c for i in range(1, k + 1) for c in (f"class_{i}", f"probability_{i}")]])
            for item, (true, top, probs) in zip(items, result["predictions"]):
                out.writerow([inert_cell(item), inert_cell(names[true]),
                              *[x for c, pr in zip(top, probs) for x in (inert_cell(names[c]), f"{pr:.6f}")]])

    atomic_write(path, write)


def name_of(loads: list) -> str:
    return " + ".join(x.name for x in loads)


@dataclass(frozen=True)
class Options:
    """What an evaluation is asked for: this command's flags as typed values (the Python API passes them)."""
    data: str
    checkpoints: tuple[str, ...] = ()
    model: str | None = None
    weights: str | None = None
    weights_dir: str | None = None
    style: str | None = None
    split: str = "auto"
    protocol: str = "center"
    batch_size: int = 500
    workers: int = 4
    device: str = "auto"
    plot: str | None = None
    save_predictions: str | None = None
    topk: int = 5
    force: bool = False


def evaluation_batches(o: Options, data, loads: list, device: torch.device):
    """The batches of `data` as the loaded models take them: their size and normalization, the protocol's views."""
    loaded = loads[0]
    ref = loaded.normalization
    if any(not (torch.equal(x.normalization.mean, ref.mean) and torch.equal(x.normalization.std, ref.std)
                and x.input == loaded.input) for x in loads):
        raise UserError("the checkpoints of this ensemble take their input at other sizes or normalizations; "
                        "evaluate them apart")
    if isinstance(data, ArrayDataset):
        if o.protocol != "center":
            raise UserError(f"--protocol {o.protocol} is for image-folder (ImageNet-style) data; in-memory data "
                            "is tested on its single original view (Sec. 4.2)")
        batches = DeviceLoader(data.images, data.labels, o.batch_size, device, loaded.normalization, augment=False)
    else:
        # The model's own input: its crop and resize, its normalization (a CIFAR net on a folder of larger
        # images is tested at 32x32 with its per-pixel mean, as `predict` does, not with ImageNet's 224 crop).
        imagenet_input = ref.kind == "imagenet"
        if o.protocol == "multiscale" and not imagenet_input:
            raise UserError(f"--protocol multiscale is the paper's ImageNet test (ImageNet mean/std, sides 224-640); "
                            f"{name_of(loads)} takes {loaded.input['size']}x{loaded.input['size']} input normalized "
                            f"by its {ref.kind} statistics: use --protocol center or 10-crop")
        batches = eval_loader(data, o.batch_size, o.workers, protocol=o.protocol, crop=loaded.input["size"],
                              resize=loaded.input["resize"], normalize=None if imagenet_input else ref)
    return batches


def measure(o: Options) -> dict:
    """The evaluation `o` asks for, its files written: `resnetlab evaluate` and `resnetlab.evaluate()`."""
    if o.batch_size <= 0 or o.topk <= 0:
        raise UserError("--batch-size and --topk must be positive")
    if o.workers < 0:
        raise UserError(f"--workers must be 0 or more, not {o.workers}")
    check_outputs(o)
    ds = open_dataset(o.data)
    loads = [load_model(c, o.model, o.weights, num_classes=len(ds.classes), weights_dir=o.weights_dir,
                        style=o.style)
             for c in o.checkpoints or [None]]
    loaded = loads[0]
    size = loaded.input["size"]
    if size <= SMALL_IMAGE and ds.image_size() != (size, size):
        ds = open_dataset(o.data, size=size)  # the images as the network trained on them: in memory, fitted
    for other in loads:
        if other.classes is not None and not pretrained.same_classes(other.classes, ds.classes):
            raise UserError(f"{o.data} has classes {ds.classes[:5]}..., a checkpoint {other.classes[:5]}...")
    recorded = (loaded.checkpoint or {}).get("split", {})
    # a flat folder is evaluated whole unless it is the very folder the run trained (and held out) from
    trained_on_it = ds.flat and recorded.get("data_sha1") == content_digest(ds.splits["train"])
    split = evaluation_name(ds, o.split, recorded.get("val"), trained_on_it)
    seen = trained_on_all(recorded, ds) and split in ("train", "holdout")
    if seen and o.split == "auto":
        raise UserError(f"{name_of(loads)} trained on every training image of {o.data} ({recorded['train_images']:,}, "
                        "no hold-out kept: the paper's final protocol) and the data has no test or val/ split, so "
                        "there is nothing unseen to measure it on; give data with a test split, or --split train "
                        "to measure the images it trained on")
    data = select_split(ds, split, recorded.get("holdout", PAPER_HOLDOUT))
    if len(data) == 0:
        raise UserError(f"--data {o.data}: its {split} split holds no images; nothing to evaluate")
    device = resolve_device(o.device)
    if device.type == "cpu":
        memory.keep_freed_memory()  # a sixth of the CPU's time went to page faults (runtime/memory.py)
    models = [x.model.to(device) for x in loads]
    batches = evaluation_batches(o, data, loads, device)
    name = name_of(loads)
    measured = evaluate(models, batches, predictions=o.topk if o.save_predictions else 0)
    confusion = measured.pop("confusion")
    predictions = measured.pop("predictions", None)
    result = {"model": name, "data": o.data, "split": split, "protocol": o.protocol,
              "checkpoints": list(o.checkpoints), **measured}
    if any(x.averaged for x in loads):  # evaluate says which weights it measured
        result["weights"] = "averaged (" + ", ".join(sorted({x.averaged or "trained" for x in loads})) + ")"
    result["top1_accuracy"] = 1 - result["top1_error"]
    result["per_class"] = per_class(confusion, ds.classes)
    result["confusion"] = confusion.tolist()
    if o.plot:
        plot_confusion(confusion, ds.classes, f"{name} on {measured_on(split, len(data), o.data)} ({o.protocol})",
                       Path(o.plot))
    if o.save_predictions:
        # traceable: each image's file, or CIFAR's split and index in it
        items = [str(p) for p in data.paths] if not isinstance(data, ArrayDataset) else data.items()
        write_predictions(Path(o.save_predictions), {"predictions": predictions}, ds.classes, items)
    note = caveat(o, split, loads) or (f"these weights trained on every training image of {o.data}, the {split} "
                                        "split's included: this error is on seen images" if seen else None)
    if note:
        result["note"] = note
    return result


def measured_on(split: str, count: int, data: str) -> str:
    """What an evaluation measured, for titles: all of a folder, or one of its splits."""
    return f"all {count:,} images of {data}" if split == "all" else f"the {split} split of {data} ({count:,} images)"


def trained_on_all(recorded: dict, ds) -> bool:
    """Whether the run behind a checkpoint trained on all of `ds`'s training split (split.json: no validation,
    as many images): then neither train nor a hold-out cut from it is unseen."""
    return recorded.get("val") == "none" and recorded.get("train_images") == len(ds.splits["train"])


def caveat(o: Options, split: str, loads: list) -> str | None:
    """What a reader of the error must know: it was measured on images the network may have trained on, or on
    the split that chose the checkpoint."""
    if any(((x.checkpoint or {}).get("best") or {}).get("chosen_on") == split for x in loads):
        # The honest caveat of best.pt: an error on the split that chose the checkpoint is optimistic.
        return (f"this checkpoint was chosen as the best of its run on this {split} split, so its error here is "
                "optimistic; report last.pt's (final-iteration) error instead")
    if o.split == "auto" and split == "train":
        # No test or val/ split in the data and no hold-out recorded with the weights: the only split left may be
        # the very images the network trained on (every CIFAR net trained on CIFAR-10's training set).
        return (f"{o.data} has no test or val/ split and the weights record no hold-out, so this is the training "
                "split: a network trained on these images errs less here than on unseen ones. Give --split holdout "
                "(the paper's 5k hold-out), or data with a test split")
    return None


