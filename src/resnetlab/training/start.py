"""Where a run starts from: its network's own initialization, or trained weights (--weights), with the
controls of fine-tuning: freezing stages (--freeze) and a learning rate of the classifier's own (--head-lr).

--weights is any named weights (`resnetlab models --weights`), a weights file, or a resnetlab checkpoint (its
model only: not its optimizer, schedule or RNG). Every tensor but the classifier's must fit the network; the
classifier is kept where the data's classes are the weights' own (by name, or by count where the file names
none), and is otherwise the network's own new initialization. The normalization follows the weights (their
per-pixel mean, or ImageNet's mean/std for torchvision's and akamaster's) unless --normalization says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from resnetlab.data import Normalization
from resnetlab.data.download import file_digest
from resnetlab.errors import UserError
from resnetlab.models import create_model, freezing, load_weights, pretrained, read_checkpoint, weights_fetch
from resnetlab.models.weights import extract_state_dict, trained_as
from resnetlab.training.config import TrainConfig
from resnetlab.training.optimizers import layer_ids


@dataclass
class Start:
    """Trained weights a run starts from, read and hashed once (a ResNet-152 file takes ~1 s a pass)."""
    given: str  # as the user named them
    file: Path
    sha256: str
    classes: list[str] | None  # None: the file names no classes
    normalization: Normalization
    input: dict | None
    contents: dict = field(repr=False, default_factory=dict)  # the file as read_checkpoint returned it

    def record(self) -> dict[str, Any]:
        """What config.json, checkpoints and reports say the run started from."""
        return {"weights": self.given, "file": str(self.file), "sha256": self.sha256,
                "classes": len(self.classes) if self.classes else None}


def resolve_start(cfg: TrainConfig) -> Start:
    """The weights `cfg.weights` names, found and identified (nothing is loaded into a network yet)."""
    given = cfg.weights
    if pretrained.names_published_weights(given):
        w = pretrained.lookup(cfg.model, given)
        file = weights_fetch.fetch(w)  # checks the file's sha256 against the registry's
        contents = read_checkpoint(file)
        # A whole published digest is the one fetch has just checked; an 8-hex prefix is not the file's digest.
        digest = w.sha256.lower() if len(w.sha256) == 64 else file_digest(file, "sha256")
        return Start(given, file, digest, list(w.classes), w.input_normalization(contents), dict(w.input), contents)
    path = Path(given)
    if not path.is_file():
        what = ("a folder, not a weights file" if path.is_dir() else
                "not a regular file (a pipe or a device)" if path.exists() else
                "a link that leads nowhere or loops" if path.is_symlink() else
                f"no such file, and no named weights of {cfg.model} are called so")
        raise UserError(f"--weights {given}: {what}")
    obj, digest = read_checkpoint(path), file_digest(path, "sha256")
    known = pretrained.identify(path, digest)
    if isinstance(obj.get("model_name"), str) and isinstance(obj.get("normalization"), dict):
        norm = Normalization.from_dict(obj["normalization"])
        classes = obj.get("classes") if isinstance(obj.get("classes"), list) else None
        return Start(given, path, digest, classes, norm, obj.get("input"), obj)
    if known is not None:
        return Start(given, path, digest, list(known.classes), known.input_normalization(), dict(known.input), obj)
    # A foreign state dict (torchvision's or akamaster's format): they were trained on ImageNet's mean/std.
    return Start(given, path, digest, None, Normalization.imagenet(), None, obj)


def load_start(model: nn.Module, cfg: TrainConfig, start: Start, classes: list[str], options: dict) -> str:
    """Load `start` into `model` (built for `classes`); returns the start-up line that says what was kept."""
    state = start.contents
    network, _ = trained_as(state, start.file, start.sha256)
    if network is not None and network != cfg.model and network.replace("plain", "resnet") != cfg.model.replace(
            "plain", "resnet"):
        raise UserError(f"--weights {start.given} are {network}'s weights, not {cfg.model}'s: give weights of "
                        f"{cfg.model} (`resnetlab models --weights`), or --model {network}")
    rows = _classifier_rows(state)
    source = create_model(cfg.model, **{**options, "num_classes": rows})
    load_weights(source, start.file, style=cfg.style, contents=state, digest=start.sha256)  # checks the network and style the file was trained as
    keep = pretrained.same_classes(start.classes, classes) if start.classes else rows == len(classes)
    own = model.state_dict()
    loaded = {k: v for k, v in source.state_dict().items() if keep or not k.startswith("fc.")}
    own.update({k: v.to(own[k].dtype) for k, v in loaded.items()})
    model.load_state_dict(own)
    where = f"{start.given} ({start.file}, sha256 {start.sha256[:12]})"
    if keep:
        return f"starting from {where}: every tensor, the classifier too (the same {len(classes)} classes)"
    return (f"starting from {where}: the backbone; a new {len(classes)}-way classifier, initialized as the network's "
            f"own (the weights have {rows} classes, the data {len(classes)})")


def _classifier_rows(obj: dict) -> int:
    """The classifier's output count, read under resnetlab's names (extract_state_dict maps the other formats)."""
    fc = extract_state_dict(obj).get("fc.weight")
    if fc is None or fc.dim() != 2 or fc.shape[0] == 0:
        raise UserError("--weights: the file holds no classifier (fc.weight with one row per class) of a resnetlab "
                        "network")
    return int(fc.shape[0])


def stage_names(model: nn.Module) -> list[str]:
    """The names --freeze takes: stem, layer1..layerN, and backbone (everything but the classifier)."""
    return ["stem", *(f"layer{i + 1}" for i in range(model.stages)), "backbone"]


def freeze(model: nn.Module, names: str) -> list[str]:
    """Fix the parameters of the named stages (no gradient, no update) and their BatchNorm statistics (those
    layers always run as in evaluation); returns the frozen stages."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    valid = stage_names(model)
    unknown = [n for n in wanted if n not in valid]
    if unknown:
        raise UserError(f"--freeze {unknown[0]!r}: not a stage of this network (its stages: {', '.join(valid)})")
    if "backbone" in wanted:
        wanted = valid[:-1]
    for name in wanted:
        for module in ([model.conv1, model.bn1] if name == "stem" else [getattr(model, name)]):
            freezing.freeze(module)
    return wanted


def lr_factors(model: nn.Module, cfg: TrainConfig) -> dict[str, float]:
    """Each parameter's lr over --lr, by name: --layer-decay's by layer (optimizers.layer_ids), --head-lr's for
    the classifier. The one place of the rule: the optimizer's groups and the self-check's probe read it."""
    ids = layer_ids(model) if cfg.layer_decay else {}
    last = max(ids.values(), default=0)
    factors = {}
    for name, _ in model.named_parameters():
        name = name.removeprefix("module.")  # DDP's
        factor = cfg.layer_decay ** (last - ids[name]) if ids else 1.0
        factors[name] = cfg.head_lr / cfg.lr if cfg.head_lr and name.startswith("fc.") else factor
    return factors


def weight_decays(model: nn.Module, cfg: TrainConfig) -> dict[str, float]:
    """Each parameter's weight decay, by name: --norm-weight-decay for normalization layers' weights and every
    bias where it is given (torchvision's references' rule), --weight-decay for the rest. The one place of the
    rule: the optimizer's groups, the seeds-together SGD and the self-check's probe read it."""
    norms = {f"{module_name}.{p}".lstrip(".") for module_name, module in model.named_modules()
             if isinstance(module, nn.modules.batchnorm._NormBase) for p, _ in module.named_parameters(recurse=False)}
    out = {}
    for name, _ in model.named_parameters():
        name = name.removeprefix("module.")  # DDP's
        special = cfg.norm_weight_decay >= 0 and (name in norms or name.endswith(".bias"))
        out[name] = cfg.norm_weight_decay if special else cfg.weight_decay
    return out


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """The optimizer's groups: trainable parameters by their lr factor (lr_factors) and weight decay
    (weight_decays), the classifier apart where --head-lr is given; each group's `lr_factor` is its lr over
    --lr, which schedules scale alike."""
    factors, decays = lr_factors(model, cfg), weight_decays(model, cfg)
    groups: dict[tuple[bool, float, float], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            key = (bool(cfg.head_lr) and name.startswith("fc."), factors[name], decays[name])
            groups.setdefault(key, []).append(param)
    return [{"params": params, "lr_factor": factor, **({"lr": cfg.lr * factor} if factor != 1.0 else {}),
             **({"weight_decay": decay} if decay != cfg.weight_decay else {})}
            for (_, factor, decay), params in groups.items()]  # linear probing: the classifier's group alone


def frozen_parameters(model: nn.Module) -> dict[str, Tensor]:
    """The frozen tensors (for tests and reports: they must stay bit-identical through training)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}


def check_start_options(cfg: TrainConfig, runs: int) -> None:
    if runs > 1 and cfg.layer_decay:
        raise UserError("--layer-decay: seeds trained together share one lr per parameter group; train them one at a "
                        "time (reproduce --together off)")
    if runs > 1 and cfg.opt != "sgd":
        raise UserError(f"--opt {cfg.opt}: seeds trained together stack SGD's momenta (multiseed/); train them one "
                        "at a time (reproduce --together off) or with --opt sgd")

