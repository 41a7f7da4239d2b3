"""Top-1/top-5 error and loss of a model, or of an ensemble, under the paper's testing protocols.

A batch's input is one of:
- (B, C, H, W): one view per image (the centre crop, or CIFAR's single original view);
- (B, crops, C, H, W): several crops per image (the 10-crop test of Sec. 3.4), softmax averaged;
- a list of (B, C, h, w) tensors, one per scale: the fully-convolutional multi-scale test of Table 4, each
  scale and its mirror scored with the fc layer as a 1x1 convolution, softmax averaged over all of them.
An ensemble (Table 5) averages the softmax of its models.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Views = tuple[Tensor | list[Tensor], Tensor]  # (input, labels): a Batch, or a DataLoader's pair


def fully_convolutional_logits(model: nn.Module, x: Tensor) -> Tensor:
    """The fc layer applied as a 1x1 convolution to the last feature map (any size), its class scores
    averaged over the positions: at a 224 centre crop this is the ordinary forward pass."""
    maps = model.features(x)[-1]
    scores = F.conv2d(maps, model.fc.weight[:, :, None, None], model.fc.bias)  # (B, classes, h, w)
    return scores.mean((2, 3))


def _log_probs(models: Sequence[nn.Module], x: Tensor | list[Tensor], amp: torch.dtype | None) -> Tensor:
    """log of the softmax averaged over models, crops, scales and mirrors; (B, classes)."""
    device = next(models[0].parameters()).device
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        if isinstance(x, list):  # multi-scale, fully convolutional, with mirrors
            views = [v.to(device) for v in x]
            probs = [fully_convolutional_logits(m, view).float().softmax(1)
                     for m in models for v in views for view in (v, v.flip(-1))]
            return torch.stack(probs).mean(0).clamp_min(1e-12).log()
        x = x.to(device, non_blocking=True)
        crops = x.shape[1] if x.dim() == 5 else 1
        logits = [m(x.flatten(0, 1) if crops > 1 else x).float() for m in models]
    if len(models) == 1 and crops == 1:
        return F.log_softmax(logits[0], 1)
    probs = torch.stack([z.softmax(1).view(len(z) // crops, crops, -1).mean(1) for z in logits]).mean(0)
    return probs.clamp_min(1e-12).log()


@torch.no_grad()
def evaluate(models: nn.Module | Sequence[nn.Module], batches: Iterable[Views], amp_dtype: torch.dtype | None = None,
             predictions: int = 0) -> dict:
    """count, loss, top-1/top-5 error and the confusion matrix (rows: true class, columns: predicted);
    with `predictions` = k, also each image's true class and top-k classes with their probabilities."""
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    was_training = [m.training for m in models]
    for m in models:
        m.eval()
    loss = top1 = top5 = count = 0.0
    confusion: Tensor | None = None
    kept: list[tuple[Tensor, Tensor, Tensor]] = []
    for batch in batches:
        x, y = batch[0], batch[1]
        log_probs = _log_probs(models, x, amp_dtype)
        y = y.to(log_probs.device, non_blocking=True)
        classes = log_probs.shape[1]
        loss += F.nll_loss(log_probs, y, reduction="sum")
        topk = log_probs.topk(min(5, classes), 1).indices
        top1 += (topk[:, 0] != y).sum()
        top5 += (~(topk == y[:, None]).any(1)).sum()
        count += len(y)
        pairs = torch.bincount(y * classes + topk[:, 0], minlength=classes * classes).view(classes, classes)
        confusion = pairs if confusion is None else confusion + pairs
        if predictions:
            values, indices = log_probs.exp().topk(min(predictions, classes), 1)
            kept.append((y.cpu(), indices.cpu(), values.float().cpu()))
    for m, mode in zip(models, was_training):
        m.train(mode)
    if not count:
        return {"count": 0, "loss": float("nan"), "top1_error": float("nan"), "top5_error": float("nan")}
    result = {"count": int(count), "loss": float(loss) / count, "top1_error": float(top1) / count,
              "top5_error": float(top5) / count, "confusion": confusion.cpu()}
    if predictions:
        result["predictions"] = [(int(t), i.tolist(), v.tolist()) for y, idx, val in kept for t, i, v in zip(y, idx, val)]
    return result
