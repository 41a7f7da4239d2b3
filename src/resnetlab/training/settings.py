"""Every setting of a run, each described once: its default, its help, its choices, its group, and how it
behaves when a run resumes, when seeds train together, and when `reproduce` adds to a folder of runs.

The command line (cli/train.py), resume (training/loop.py), the multi-seed adapter's check and the report
folders (experiments/runs.py) read these tables; none keeps a list of its own. A new setting is one `setting(...)`
line here, and the code that uses it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from resnetlab.training.optimizers import OPTIMIZERS
from resnetlab.training.schedules import SCHEDULES


def setting(default: Any = dataclasses.MISSING, *, help: str = "", group: str = "", choices: tuple | None = None,
            resume: bool = False, together: bool = False, same_run: bool = False, factory: Any = dataclasses.MISSING):
    """A TrainConfig field. group: its TOML table (optimizer, model, data, system; "" for the run's identity);
    resume: a resumed run may change it; together: seeds trained together must share it; same_run: a report
    folder's runs must share it (`reproduce` refuses to mix)."""
    meta = {"help": help, "group": group, "choices": choices, "resume": resume, "together": together,
            "same_run": same_run}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every setting of a run, in four groups (a TOML file may use them as tables: [optimizer] lr = 0.05)."""
    model: str = setting("cifar_resnet20", together=True, same_run=True,
                         help="network name (see `resnetlab models`), e.g. cifar_resnet20, cifar_plain56, resnet50")
    data: str = setting("cifar10", resume=True, together=True,
                        help="dataset: a folder, an official CIFAR tarball, or cifar10/cifar100 (downloaded once)")
    recipe: str = setting("cifar-paper", same_run=True,
                          help="the paper's recipe to start from (default: the one the paper trained the network "
                               "with: cifar-paper for the CIFAR nets, imagenet-paper for the others)")
    out: str = setting("", help="run directory (config, metrics.jsonl, last.pt, best.pt, summary.json)")
    # optimizer and schedule (Sec. 3.4 / 4.2)
    iters: int = setting(64000, group="optimizer", resume=True, together=True,
                         help="total iterations (the lr milestones scale with it unless --milestones is given; "
                              "with --resume, only while no milestone has been passed)")
    epochs: float = setting(0.0, group="optimizer", together=True,
                            help="the run's length in passes over the training images, instead of --iters (0: "
                                 "--iters); the finetune recipe's default: 30 epochs, within 100-4,000 iterations")
    batch_size: int = setting(128, group="optimizer", together=True, same_run=True)
    opt: str = setting("sgd", group="optimizer", choices=tuple(OPTIMIZERS), together=True, same_run=True,
                       help="; ".join(f"{name}: {o.help}" for name, o in OPTIMIZERS.items()))
    layer_decay: float = setting(0.0, group="optimizer", together=True, same_run=True,
                                 help="layer-wise lr decay, timm's: the classifier at --lr (or --head-lr), each "
                                      "residual block and the stem below it this factor times the one above "
                                      "(e.g. 0.7; 0: off)")
    lr: float = setting(0.1, group="optimizer", same_run=True)
    momentum: float = setting(0.9, group="optimizer", together=True, same_run=True)
    weight_decay: float = setting(1e-4, group="optimizer", together=True, same_run=True)
    head_lr: float = setting(0.0, group="optimizer", together=True, same_run=True,
                             help="the classifier's own learning rate (0: --lr), scaled by the schedule as --lr is")
    label_smoothing: float = setting(0.0, group="optimizer", together=True, same_run=True,
                                     help="cross-entropy against targets smoothed by this much (0: the paper's)")
    schedule: str = setting("step", group="optimizer", choices=tuple(SCHEDULES),
                            help="; ".join(f"{name}: {s.help}" for name, s in SCHEDULES.items()))
    milestones: list[int] = setting(group="optimizer", resume=True, factory=lambda: [32000, 48000],
                                    help="iterations at which the lr is divided by 10, comma-separated")
    plateau_patience: int = setting(3, group="optimizer", help="evaluations without improvement before lr /= 10")
    warmup: str = setting("auto", group="optimizer", choices=("auto", "on", "off"), same_run=True,
                          help="lr --warmup-lr until the training error is below --warmup-until-error "
                               "(auto: ResNet-110/1202, as the paper)")
    warmup_lr: float = setting(0.01, group="optimizer")
    warmup_until_error: float = setting(0.8, group="optimizer")
    # model
    shortcut: str = setting("", group="model", choices=("", "A", "B", "C"), together=True, same_run=True,
                            help="A (zero-padding), B (projection where shapes change), C (projection everywhere); "
                                 "default: the paper's for the network")
    style: str = setting("paper", group="model", choices=("paper", "torchvision"), same_run=True)
    zero_init_residual: bool = setting(False, group="model", same_run=True)
    weights: str = setting("", group="model", together=True, same_run=True,
                           help="start from trained weights: named ones (resnetlab, akamaster, DEFAULT, IMAGENET1K_V2, "
                                "...), a weights file, or a run's checkpoint (its model only); the classifier is new "
                                "where the data's classes differ (default recipe then: finetune)")
    freeze: str = setting("", group="model", together=True, same_run=True,
                          help="stages kept fixed, comma-separated: stem, layer1, layer2, ... (the network's own), or "
                               "backbone (all but the classifier: linear probing); their BatchNorm statistics too")
    # data
    normalization: str = setting("pixel-mean", group="data", choices=("pixel-mean", "channel", "imagenet", "weights"),
                                 same_run=True, help="pixel-mean (the paper's per-pixel mean), channel (mean/std), "
                                                     "imagenet (fixed constants), weights (those --weights were "
                                                     "trained with: the finetune recipe's)")
    img_size: int = setting(0, group="data", together=True, same_run=True,
                            help="the side of the network's input in pixels (0: its own: 32 for the CIFAR nets "
                                 "whatever the photos' size, 224 for the ImageNet nets on photo folders, CIFAR's 32 "
                                 "as it is); up to 64 the images are resized once into memory, larger ones are "
                                 "streamed")
    crop_scale: float = setting(0.0, group="data", together=True, same_run=True,
                                help="train on RandomResizedCrops of at least this share of each image's area "
                                     "(timm's --scale, e.g. 0.08 or 0.35 for small folders; 0: the paper's "
                                     "augmentation: pad-and-crop in memory, scale augmentation when streamed)")
    holdout: int = setting(5000, group="data", same_run=True)
    val: str = setting("auto", group="data", choices=("auto", "holdout", "test", "val", "none"), same_run=True,
                       help="validation split: auto (the test split, else a val/ folder, else the 5k hold-out), "
                            "holdout, test, val, none")
    workers: int = setting(4, group="data", resume=True)
    skip_corrupt: bool = setting(False, group="data", help="pass over images that cannot be decoded, and say how many")
    # system: bookkeeping, device, speed
    eval_every: int = setting(1000, group="system", resume=True)
    log_every: int = setting(100, group="system", resume=True)
    save_every: int = setting(0, group="system", resume=True,
                              help="also write last.pt every N iterations (0: at evaluations only)")
    save_minutes: float = setting(0.0, group="system", resume=True,
                                  help="also write last.pt at the first log point after this many minutes since the "
                                       "last checkpoint (0: never by time): bounds the work a hard kill loses")
    seed: int = setting(0, group="system", same_run=True)
    device: str = setting("auto", group="system", choices=("auto", "cpu", "cuda"), resume=True, together=True)
    amp: str = setting("auto", group="system", choices=("auto", "bf16", "fp16", "off"), together=True,
                       help="mixed precision: auto (bf16 on CUDA and on CPUs with native bf16, else fp32), bf16, "
                            "fp16, off")
    # faster on CPUs and GPUs alike (460 vs 401 images/s, ResNet-20, 2 CPU cores)
    channels_last: str = setting("on", group="system", choices=("on", "off"))
    fast: str = setting("auto", group="system", choices=("auto", "on", "off"),
                        help="auto: compile the whole training step where that measured faster and the run is long "
                             "enough (>= 2,000 iterations), bf16 on CUDA and on CPUs with native bf16; on, off")
    compile: str = setting("default", group="system", choices=("off", "default", "reduce-overhead", "max-autotune"),
                           help="torch.compile mode when the step is compiled; off: never")
    tensorboard: bool = setting(False, group="system", help="also write TensorBoard event files to RUN_DIR/tensorboard")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
CHOICES = {name: f.metadata["choices"] for name, f in FIELDS.items() if f.metadata["choices"]}
GROUPS = {group: tuple(name for name, f in FIELDS.items() if f.metadata["group"] == group)
          for group in ("optimizer", "model", "data", "system")}
HELP = {name: f.metadata["help"] for name, f in FIELDS.items() if f.metadata["help"]}
# A resumed run may change these (--data: a run moved to another machine finds its data elsewhere; Run checks
# that it is the same dataset).
RESUME_CHANGEABLE = frozenset(name for name, f in FIELDS.items() if f.metadata["resume"])
TOGETHER_SAME = tuple(name for name, f in FIELDS.items() if f.metadata["together"])
SAME_RUN = tuple(name for name, f in FIELDS.items() if f.metadata["same_run"])
