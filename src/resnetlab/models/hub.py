"""`hf-hub:ORG/NAME[@REVISION]`: a model folder on the Hugging Face Hub (config.json + model.safetensors), as
timm names them. Read from huggingface_hub's cache when it is there (HF_HUB_CACHE, else ~/.cache/huggingface/
hub), else downloaded once into it; offline, the error says what to put where."""

from __future__ import annotations

import re
from pathlib import Path

from resnetlab.errors import UserError
from resnetlab.models.safetensors_files import CONFIG_FILE, WEIGHTS_FILE, is_model_folder

PREFIX = "hf-hub:"
REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_hub_name(spec: object) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def local(spec: str | Path | None) -> str | Path | None:
    """`spec` itself, or for an hf-hub: name the folder in the Hub's cache that holds it."""
    if not is_hub_name(spec):
        return spec
    repo, _, revision = spec[len(PREFIX):].partition("@")
    if not REPO.fullmatch(repo):
        raise UserError(f"{spec}: a Hub name is hf-hub:ORG/NAME (optionally @REVISION)")
    try:
        # optional (the hub extra): only hf-hub: names need it
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(f"{spec}: hf-hub: names need the huggingface_hub package: pip install 'resnetlab[hub]'") from None
    wanted = dict(repo_id=repo, revision=revision or None, allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, "README.md"])
    try:
        folder = snapshot_download(**wanted, local_files_only=True)
    except Exception:  # noqa: BLE001 - not in the cache (huggingface_hub's several error types): download it
        try:
            folder = snapshot_download(**wanted)
        except Exception as e:  # noqa: BLE001 - offline, no such repository, no permission
            from huggingface_hub.constants import HF_HUB_CACHE  # the module above is importable

            raise UserError(f"{spec}: not in the Hugging Face cache ({HF_HUB_CACHE}) and it cannot be downloaded "
                            f"({type(e).__name__}); offline, put its {CONFIG_FILE} and {WEIGHTS_FILE} in a folder "
                            "and give that folder instead") from None
    if not is_model_folder(Path(folder)):
        raise UserError(f"{spec}: the Hub folder {folder} has no {WEIGHTS_FILE}; resnetlab reads safetensors only")
    return folder
