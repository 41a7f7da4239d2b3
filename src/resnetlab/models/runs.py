"""K independent runs of one network as one network: `create_model(name, runs=K)`, and the exact
conversion between K runs' state dicts and the stacked network's.

Every layer of the stacked network is the network's own layer K times wider, its convolutions grouped
so that group k sees only run k's channels; BN and ReLU work per channel and the fc layer per run
(models.resnet.RunsLinear). Its input is (B, K*3, H, W), run k's images in channels 3k..3k+2, its output
(B, K, classes). The parameter names are the single network's, so packing is concatenation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from resnetlab.models.registry import create_model


def pack(states: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """K state dicts of one architecture -> the stacked network's: fc stacked, everything else concatenated."""
    out = {}
    for key in states[0]:
        values = [s[key] for s in states]
        if key.endswith("num_batches_tracked"):
            out[key] = values[0].clone()
        elif key.startswith("fc."):
            out[key] = torch.stack(values)
        else:
            out[key] = torch.cat(values)
    return out


def unpack(stacked: dict[str, Tensor], template: dict[str, Tensor], k: int) -> list[dict[str, Tensor]]:
    """The inverse of pack: run i's state dict, keyed and shaped like `template`."""
    runs: list[dict[str, Tensor]] = [{} for _ in range(k)]
    for key, like in template.items():
        value = stacked[key]
        for i in range(k):
            runs[i][key] = value.clone() if key.endswith("num_batches_tracked") else value.chunk(k)[i].reshape(like.shape).clone()
    return runs


def stack(models: list[nn.Module], name: str, **options) -> nn.Module:
    """One network computing each of `models` (all built as `name` with `options`) on its own channels."""
    net = create_model(name, runs=len(models), **options)
    net.load_state_dict(pack([m.state_dict() for m in models]))
    return net
