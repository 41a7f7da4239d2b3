"""Every setting of a run, each described once: its default, its help, its choices, its bounds (and the error
when a value is out of them), its group, and how it behaves when a run resumes, when seeds train together,
when `reproduce` adds to a folder of runs, and whether it changes the training step (the self-check's verdict
key).

The command line (cli/train.py), the config file, the API, resume (training/loop.py), the multi-seed adapter's
check, the self-check and the report folders (experiments/runs.py) read these tables; none keeps a list of its
own. A new setting is one `setting(...)` line here, and the code that uses it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from resnetlab.data.batch_transforms import BATCH_TRANSFORMS
from resnetlab.data.image_policies import POLICIES
from resnetlab.training.optimizers import OPTIMIZERS
from resnetlab.training.schedules import SCHEDULES

Check = Callable[[Any], "str | None"]  # a value -> what is wrong with it ("must be ..., not X"), or None


def within(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False, note: str = "") -> Check:
    """A number in [lo, hi] (or open at either end)."""
    def check(value: Any) -> str | None:
        ok = (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi)
        bounds = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        return None if ok else f"must be in {bounds}{f' ({note})' if note else ''}, not {value:g}"
    return check


def positive(value: Any) -> str | None:
    return None if value > 0 else f"must be a positive whole number, not {value}"


def not_negative(value: Any) -> str | None:
    return None if value >= 0 else f"cannot be negative, not {value}"


def increasing_iterations(value: Any) -> str | None:
    ok = sorted(value) == value and all(m > 0 for m in value)
    return None if ok else f"must be increasing positive iterations, not {value}"


def setting(default: Any = dataclasses.MISSING, *, help: str = "", group: str = "", choices: tuple | None = None,
            check: Check | None = None, resume: bool = False, together: bool = False, same_run: bool = False,
            step: bool = False, factory: Any = dataclasses.MISSING):
    """A TrainConfig field. group: its TOML table (optimizer, model, data, system; "" for the run's identity);
    check: its bounds (training/config.py's validate raises a SettingError with its text); resume: a resumed
    run may change it; together: seeds trained together must share it; same_run: a report folder's runs must
    share it (`reproduce` refuses to mix); step: it changes what the training step computes, so the
    self-check's verdict on another value says nothing of this one (fastcheck.verdict_key)."""
    meta = {"help": help, "group": group, "choices": choices, "check": check, "resume": resume,
            "together": together, "same_run": same_run, "step": step}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every setting of a run, in four groups (a TOML file may use them as tables: [optimizer] lr = 0.05)."""
    model: str = setting("cifar_resnet20", together=True, same_run=True, step=True,
                         help="network name (see `resnetlab models`), e.g. cifar_resnet20, cifar_plain56, resnet50")
    data: str = setting("cifar10", resume=True, together=True,
                        help="dataset: a folder, an official CIFAR tarball, or cifar10/cifar100 (downloaded once)")
    recipe: str = setting("cifar-paper", same_run=True,
                          help="the paper's recipe to start from (default: the one the paper trained the network "
                               "with: cifar-paper for the CIFAR nets, imagenet-paper for the others)")
    out: str = setting("", help="run directory (config, metrics.jsonl, last.pt, best.pt, summary.json)")
    # optimizer and schedule (Sec. 3.4 / 4.2)
    iters: int = setting(64000, group="optimizer", resume=True, together=True, check=positive,
                         help="total iterations (the lr milestones scale with it unless --milestones is given; "
                              "with --resume, only while no milestone has been passed)")
    epochs: float = setting(0.0, group="optimizer", together=True,
                            check=within(0, 100_000, note="0: --iters sets the length"),
                            help="the run's length in passes over the training images, instead of --iters (0: "
                                 "--iters); the finetune recipe's default: 30 epochs, within 100-4,000 iterations")
    batch_size: int = setting(128, group="optimizer", together=True, same_run=True, step=True, check=positive)
    opt: str = setting("sgd", group="optimizer", choices=tuple(OPTIMIZERS), together=True, same_run=True, step=True,
                       help="; ".join(f"{name}: {o.help}" for name, o in OPTIMIZERS.items()))
    layer_decay: float = setting(0.0, group="optimizer", together=True, same_run=True, step=True,
                                 check=within(0, 1, note="0: off; timm's fine-tunes use 0.6-0.9"),
                                 help="layer-wise lr decay, timm's: the classifier at --lr (or --head-lr), each "
                                      "residual block and the stem below it this factor times the one above "
                                      "(e.g. 0.7; 0: off)")
    lr: float = setting(0.1, group="optimizer", same_run=True, check=within(0, 10, lo_open=True))
    momentum: float = setting(0.9, group="optimizer", together=True, same_run=True, step=True,
                             check=within(0, 1, hi_open=True))
    weight_decay: float = setting(1e-4, group="optimizer", together=True, same_run=True, step=True,
                                 check=not_negative)
    head_lr: float = setting(0.0, group="optimizer", together=True, same_run=True, step=True,
                             check=within(0, 10, note="0: the same as --lr"),
                             help="the classifier's own learning rate (0: --lr), scaled by the schedule as --lr is")
    label_smoothing: float = setting(0.0, group="optimizer", together=True, same_run=True, step=True,
                                     check=within(0, 1, hi_open=True),
                                     help="cross-entropy against targets smoothed by this much (0: the paper's)")
    nesterov: bool = setting(False, group="optimizer", together=True, same_run=True, step=True,
                             help="Nesterov momentum (torchvision's --nesterov; the paper's SGD has none)")
    norm_weight_decay: float = setting(-1.0, group="optimizer", together=True, same_run=True, step=True,
                                       check=lambda v: None if v == -1 or v >= 0 else
                                       f"must be 0 or more (-1: --weight-decay), not {v:g}",
                                       help="weight decay of normalization layers and biases (torchvision's "
                                            "--norm-weight-decay; its V2 recipe: 0; -1: --weight-decay, the "
                                            "paper's)")
    lr_warmup_iters: int = setting(0, group="optimizer", together=True, same_run=True, check=not_negative,
                                   help="linear warm-up: the lr rises from 1/100 of the schedule's to it over the "
                                        "first N iterations (torchvision's --lr-warmup-method linear, in "
                                        "iterations; scaled with --iters as the milestones are; 0: off)")
    model_ema: bool = setting(False, group="optimizer", together=True, same_run=True, step=True,
                              help="keep an exponential moving average of the weights and BatchNorm statistics, "
                                   "evaluated beside the weights and used by evaluate, predict and export "
                                   "(torchvision's --model-ema)")
    model_ema_decay: float = setting(0.97, group="optimizer", together=True, same_run=True, step=True,
                                     check=within(0, 1, hi_open=True),
                                     help="the EMA's decay per update: average = decay * average + (1 - decay) "
                                          "* weights (0.97 every 32 steps: a horizon of ~1,000 steps)")
    model_ema_steps: int = setting(32, group="optimizer", together=True, same_run=True, step=True, check=positive,
                                   help="update the EMA every N steps (torchvision's default: 32)")
    schedule: str = setting("step", group="optimizer", choices=tuple(SCHEDULES),
                            help="; ".join(f"{name}: {s.help}" for name, s in SCHEDULES.items()))
    milestones: list[int] = setting(group="optimizer", resume=True, factory=lambda: [32000, 48000],
                                    check=increasing_iterations,
                                    help="iterations at which the lr is divided by 10, comma-separated")
    plateau_patience: int = setting(3, group="optimizer", check=positive, help="evaluations without improvement before lr /= 10")
    warmup: str = setting("auto", group="optimizer", choices=("auto", "on", "off"), same_run=True,
                          help="lr --warmup-lr until the training error is below --warmup-until-error "
                               "(auto: ResNet-110/1202, as the paper)")
    warmup_lr: float = setting(0.01, group="optimizer", check=within(0, 10, lo_open=True))
    warmup_until_error: float = setting(0.8, group="optimizer", check=within(0, 1, lo_open=True))
    # model
    shortcut: str = setting("", group="model", choices=("", "A", "B", "C"), together=True, same_run=True, step=True,
                            help="A (zero-padding), B (projection where shapes change), C (projection everywhere); "
                                 "default: the paper's for the network")
    style: str = setting("paper", group="model", choices=("paper", "torchvision"), same_run=True, step=True)
    zero_init_residual: bool = setting(False, group="model", same_run=True, step=True)
    weights: str = setting("", group="model", together=True, same_run=True,
                           help="start from trained weights: named ones (resnetlab, akamaster, DEFAULT, IMAGENET1K_V2, "
                                "...), a weights file, or a run's checkpoint (its model only); the classifier is new "
                                "where the data's classes differ (default recipe then: finetune)")
    freeze: str = setting("", group="model", together=True, same_run=True, step=True,
                          help="stages kept fixed, comma-separated: stem, layer1, layer2, ... (the network's own), or "
                               "backbone (all but the classifier: linear probing); their BatchNorm statistics too")
    # data
    normalization: str = setting("pixel-mean", group="data", choices=("pixel-mean", "channel", "imagenet", "weights"),
                                 same_run=True, help="pixel-mean (the paper's per-pixel mean), channel (mean/std), "
                                                     "imagenet (fixed constants), weights (those --weights were "
                                                     "trained with: the finetune recipe's)")
    img_size: int = setting(0, group="data", together=True, same_run=True, step=True,
                            help="the side of the network's input in pixels (0: its own: 32 for the CIFAR nets "
                                 "whatever the photos' size, 224 for the ImageNet nets on photo folders, CIFAR's 32 "
                                 "as it is); up to 64 the images are resized once into memory, larger ones are "
                                 "streamed")
    crop_scale: float = setting(0.0, group="data", together=True, same_run=True,
                                check=within(0, 1, note="0: the paper's augmentation; timm's default 0.08"),
                                help="train on RandomResizedCrops of at least this share of each image's area "
                                     "(timm's --scale, e.g. 0.08 or 0.35 for small folders; 0: the paper's "
                                     "augmentation: pad-and-crop in memory, scale augmentation when streamed)")
    mixup_alpha: float = setting(0.0, group="data", together=True, same_run=True, step=True, check=not_negative,
                                 help=BATCH_TRANSFORMS["mixup_alpha"].help)
    cutmix_alpha: float = setting(0.0, group="data", together=True, same_run=True, step=True, check=not_negative,
                                  help=BATCH_TRANSFORMS["cutmix_alpha"].help)
    auto_augment: str = setting("", group="data", choices=("", *POLICIES), together=True, same_run=True, step=True,
                                help="a per-image augmentation policy, torchvision's v2 one of that name "
                                     "(trivialaugmentwide: torchvision's V2 recipe's; autoaugment: its CIFAR-10 "
                                     "policy on CIFAR-sized images; '': none)")
    random_erase: float = setting(0.0, group="data", together=True, same_run=True, step=True,
                                  check=within(0, 1, note="torchvision's V2 recipe: 0.1; 0: off"),
                                  help="erase a random box of each training image with this probability "
                                       "(torchvision's --random-erase)")
    holdout: int = setting(5000, group="data", same_run=True, check=not_negative)
    val: str = setting("auto", group="data", choices=("auto", "holdout", "test", "val", "none"), same_run=True,
                       help="validation split: auto (the test split, else a val/ folder, else the 5k hold-out), "
                            "holdout, test, val, none")
    workers: int = setting(4, group="data", resume=True, check=not_negative)
    skip_corrupt: bool = setting(False, group="data", help="pass over images that cannot be decoded, and say how many")
    # system: bookkeeping, device, speed
    eval_every: int = setting(1000, group="system", resume=True, check=positive)
    log_every: int = setting(100, group="system", resume=True, check=positive)
    save_every: int = setting(0, group="system", resume=True, check=not_negative,
                              help="also write last.pt every N iterations (0: at evaluations only)")
    save_minutes: float = setting(0.0, group="system", resume=True, check=not_negative,
                                  help="also write last.pt at the first log point after this many minutes since the "
                                       "last checkpoint (0: never by time): bounds the work a hard kill loses")
    seed: int = setting(0, group="system", same_run=True,
                        check=lambda v: None if 0 <= v < 2**63 else f"must be a whole number in [0, 2**63), not {v}")
    device: str = setting("auto", group="system", choices=("auto", "cpu", "cuda"), resume=True, together=True)
    amp: str = setting("auto", group="system", choices=("auto", "bf16", "fp16", "off"), together=True,
                       help="mixed precision: auto (bf16 on CUDA and on CPUs with native bf16, else fp32), bf16, "
                            "fp16, off")
    # faster on CPUs and GPUs alike (460 vs 401 images/s, ResNet-20, 2 CPU cores)
    channels_last: str = setting("on", group="system", choices=("on", "off"), step=True)
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
CHANGES_STEP = tuple(name for name, f in FIELDS.items() if f.metadata["step"])
CHECKS = {name: f.metadata["check"] for name, f in FIELDS.items() if f.metadata["check"]}
