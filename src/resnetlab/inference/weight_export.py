"""A trained model's weights as files others load: resnetlab's checkpoint format (`weights`), safetensors, and a
model folder laid out as the Hugging Face Hub's and timm's (config.json + model.safetensors + README.md). Each is
loaded back and must give the model's outputs exactly."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from resnetlab.data.download import file_digest
from resnetlab.errors import UserError
from resnetlab.files import atomic_write
from resnetlab.inference.load import LoadedModel, load_model
from resnetlab.models.safetensors_files import CONFIG_FILE, WEIGHTS_FILE, timm_config, write_safetensors
from resnetlab.runtime.checkpoint import save_checkpoint


def model_record(loaded: LoadedModel) -> dict:
    """What travels with the weights: the network and its options, classes, normalization, input, and what the
    weights were trained with (the run's config, iteration and fast paths; no optimizer, RNG or schedule)."""
    ckpt = loaded.checkpoint or {}
    trained = ckpt.get("trained") or {"config": ckpt.get("config"), "iteration": (ckpt.get("state") or {}).get("step"),
                                      "fast_paths": (ckpt.get("state") or {}).get("fast_paths")}
    return {"model_name": loaded.name,
            "model_options": ckpt.get("model_options", built_with(loaded.model)),
            "classes": loaded.classes, "normalization": loaded.normalization.to_dict(), "input": loaded.input,
            "trained": trained, "weights": f"averaged ({loaded.averaged})" if loaded.averaged else "trained",
            # which images trained it and which it was validated on: evaluate's default split reads it
            **({"split": ckpt["split"]} if ckpt.get("split") else {}),
            **({"source_sha256": file_digest(loaded.source, "sha256")} if loaded.source and loaded.source.is_file()
               else {})}


def built_with(model) -> dict:
    """The create_model options of weights loaded from elsewhere (no run recorded them): what the network is."""
    options = {"num_classes": model.fc.out_features, "shortcut": model.shortcut}
    return {**options, "style": model.style} if getattr(model, "bottleneck", False) or model.style != "paper" else options


def _state(loaded: LoadedModel) -> dict:
    return {k: v.detach().float().contiguous() if v.is_floating_point() else v.detach().clone()
            for k, v in loaded.model.state_dict().items()}


def export_weights(loaded: LoadedModel, out: Path, fmt: str) -> int:
    """`weights` (a checkpoint without optimizer state), `safetensors`, or `folder`; returns the bytes written."""
    if fmt == "folder":
        return export_folder(loaded, out)
    record = model_record(loaded)
    if fmt == "safetensors":
        write_safetensors(out, _state(loaded), record)
    else:
        save_checkpoint(out, {"model": _state(loaded), **record})
    _check_loads_back(loaded, out)
    return out.stat().st_size


def export_folder(loaded: LoadedModel, out: Path) -> int:
    """config.json (timm's form where timm has the network, with resnetlab's record beside it), model.safetensors
    and a README.md model card."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: a file is there; a model folder needs a folder")
    out.mkdir(parents=True, exist_ok=True)
    record = model_record(loaded)
    write_safetensors(out / WEIGHTS_FILE, _state(loaded), record)
    classes = loaded.classes or [str(i) for i in range(loaded.model.fc.out_features)]  # foreign weights: indices
    timm = timm_config(loaded.name, record["model_options"], classes, loaded.normalization, loaded.input)
    config = {**(timm or {"architecture": loaded.name, "num_classes": len(classes), "label_names": classes}),
              "library_name": "timm" if timm else "resnetlab",
              "resnetlab": {k: record[k] for k in ("model_name", "model_options", "input", "weights")}}
    atomic_write(out / CONFIG_FILE, lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n"))
    atomic_write(out / "README.md", lambda tmp: tmp.write_text(model_card(loaded, record, bool(timm))))
    _check_loads_back(loaded, out)
    return sum(p.stat().st_size for p in out.iterdir() if p.is_file())


def model_card(loaded: LoadedModel, record: dict, timm: bool) -> str:
    config = (record.get("trained") or {}).get("config") or {}
    how = ", ".join(f"{k} {config[k]}" for k in ("recipe", "iters", "batch_size", "lr", "data", "seed") if k in config)
    use = ('timm.create_model("hf-hub:ORG/NAME", pretrained=True)  # or resnetlab.load("hf-hub:ORG/NAME")' if timm
           else 'resnetlab.load("hf-hub:ORG/NAME")  # or resnetlab.load("path/to/this/folder")')
    return f"""---
library_name: {"timm" if timm else "resnetlab"}
tags: [image-classification, resnet, resnetlab]
---
# {loaded.name}

{loaded.name} ({loaded.model.fc.out_features} classes), exported by resnetlab; weights: {record["weights"]}.
Trained: {how or "not recorded (weights from elsewhere)"}; iteration {(record.get("trained") or {}).get("iteration")}.
Input: {loaded.input["size"]}x{loaded.input["size"]} RGB, the shorter side resized to {loaded.input["resize"]} and
centre-cropped, then (x/255 - mean) / std with the normalization in config.json / the safetensors header
({loaded.normalization.kind}).

```python
{use}
```
"""


def _check_loads_back(loaded: LoadedModel, out: Path) -> None:
    back = load_model(str(out))
    x = torch.randn(2, 3, loaded.input["size"], loaded.input["size"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if not torch.equal(back.model.eval()(x), loaded.model.eval()(x)):
            raise UserError(f"{out} does not give the model's outputs when loaded back")
