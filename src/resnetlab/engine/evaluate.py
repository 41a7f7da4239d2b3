"""Top-1/top-5 error and loss of a model over a split."""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], amp_dtype: torch.dtype | None = None) -> dict:
    """Batches of (x, y); x of shape (B, C, H, W), or (B, crops, C, H, W) whose softmax is averaged."""
    was_training = model.training
    model.eval()
    loss = top1 = top5 = count = 0.0
    device = next(model.parameters()).device
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        crops = x.shape[1] if x.dim() == 5 else 1
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(x.flatten(0, 1) if crops > 1 else x).float()
        if crops > 1:
            probs = logits.softmax(1).view(len(y), crops, -1).mean(1)
            loss += F.nll_loss(probs.clamp_min(1e-12).log(), y, reduction="sum")
        else:
            probs = logits
            loss += F.cross_entropy(logits, y, reduction="sum")
        k = min(5, probs.shape[1])
        topk = probs.topk(k, 1).indices
        top1 += (topk[:, 0] != y).sum()
        top5 += (~(topk == y[:, None]).any(1)).sum()
        count += len(y)
    model.train(was_training)
    if not count:
        return {"count": 0, "loss": float("nan"), "top1_error": float("nan"), "top5_error": float("nan")}
    return {"count": int(count), "loss": float(loss) / count, "top1_error": float(top1) / count,
            "top5_error": float(top5) / count}
