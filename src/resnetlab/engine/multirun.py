"""Many runs in one process: K CIFAR nets of one depth trained side by side as grouped convolutions.

Group k of every grouped conv sees only the channels of run k, BN and ReLU are per channel, and the
loss is the sum of the K runs' losses, so each run's gradient, weight decay and momentum are its own:
K small nets fill one device as one wide net, and each run keeps its own data order (its seed), its
own learning-rate schedule, metrics and checkpoints, exactly in the format of a run made alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tqdm import tqdm

from resnetlab.engine.config import TrainConfig
from resnetlab.engine.schedule import learning_rate
from resnetlab.engine.trainer import StopSignals, Trainer
from resnetlab.errors import UserError
from resnetlab.models.registry import cifar_depth, is_cifar


class GroupedBlock(nn.Module):
    def __init__(self, k: int, in_planes: int, planes: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.k, self.residual, self.stride = k, residual, stride
        self.pad = (planes - in_planes) // 2 if residual and (stride != 1 or in_planes != planes) else None
        self.conv1 = nn.Conv2d(k * in_planes, k * planes, 3, stride, 1, groups=k, bias=False)
        self.bn1 = nn.BatchNorm2d(k * planes)
        self.conv2 = nn.Conv2d(k * planes, k * planes, 3, 1, 1, groups=k, bias=False)
        self.bn2 = nn.BatchNorm2d(k * planes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            if self.pad is not None:  # option A inside each group: every second pixel, zeros both sides
                x = x[:, :, :: self.stride, :: self.stride]
                n, c, h, w = x.shape
                x = F.pad(x.reshape(n, self.k, c // self.k, h, w), (0, 0, 0, 0, self.pad, self.pad))
                x = x.reshape(n, -1, h, w)
            out = out + x
        return F.relu(out)


class GroupedCifarNet(nn.Module):
    """K copies of a CIFAR net (Sec. 4.2, option A) with the parameter names of one, each K times wider.

    Input (B, K*3, H, W): run k's images in channels 3k..3k+2. Output (B, K, classes).
    """

    def __init__(self, k: int, depth: int, residual: bool, num_classes: int) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.k = k
        self.conv1 = nn.Conv2d(3 * k, 16 * k, 3, 1, 1, groups=k, bias=False)
        self.bn1 = nn.BatchNorm2d(16 * k)
        in_planes = 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                blocks.append(GroupedBlock(k, in_planes, planes, 2 if i and not j else 1, residual))
                in_planes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc_weight = nn.Parameter(torch.zeros(k, num_classes, 64))
        self.fc_bias = nn.Parameter(torch.zeros(k, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        pooled = x.mean((2, 3)).view(len(x), self.k, -1)
        return torch.einsum("bkc,kjc->bkj", pooled, self.fc_weight) + self.fc_bias


def _grouped_key(key: str) -> str:
    return {"fc.weight": "fc_weight", "fc.bias": "fc_bias"}.get(key, key)


def pack(states: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """K state dicts of one architecture -> the grouped net's: fc stacked, everything else concatenated."""
    out = {}
    for key in states[0]:
        values = [s[key] for s in states]
        if key.endswith("num_batches_tracked"):
            out[key] = values[0].clone()
        elif key.startswith("fc."):
            out[_grouped_key(key)] = torch.stack(values)
        else:
            out[key] = torch.cat(values)
    return out


def unpack(grouped: dict[str, Tensor], template: dict[str, Tensor], k: int) -> list[dict[str, Tensor]]:
    """The inverse of pack: run k's state dict, keyed and shaped like `template`."""
    runs: list[dict[str, Tensor]] = [{} for _ in range(k)]
    for key in template:
        value = grouped[_grouped_key(key)]
        for i in range(k):
            runs[i][key] = value.clone() if key.endswith("num_batches_tracked") else value.chunk(k)[i].reshape(template[key].shape).clone()
    return runs


class GroupedSGD:
    """torch.optim.SGD's update (momentum, dampening 0, weight decay), with a learning rate per run.

    d = g + wd * p;  buf = m * buf + d (buf = d at the first step);  p -= lr_k * buf
    """

    def __init__(self, params: dict[str, nn.Parameter], k: int, momentum: float, weight_decay: float) -> None:
        self.params, self.k, self.momentum, self.weight_decay = params, k, momentum, weight_decay
        self.buffers: dict[str, Tensor | None] = {name: None for name in params}

    @torch.no_grad()
    def step(self, lrs: Tensor) -> None:
        for name, p in self.params.items():
            d = p.grad.add(p, alpha=self.weight_decay)
            buf = self.buffers[name]
            if buf is None:
                buf = self.buffers[name] = d.clone()
            else:
                buf.mul_(self.momentum).add_(d)
            p.view(self.k, -1).sub_(lrs[:, None] * buf.view(self.k, -1))

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None


class MultiRun:
    """Train the runs of `configs` (one CIFAR model, one data set, one batch size) together."""

    def __init__(self, configs: list[TrainConfig], resume: list[bool]) -> None:
        first = configs[0]
        same = ("model", "data", "batch_size", "iters", "momentum", "weight_decay", "shortcut", "device", "amp")
        for cfg in configs[1:]:
            diff = [f for f in same if getattr(cfg, f) != getattr(first, f)]
            if diff:
                raise UserError(f"runs trained together must share {', '.join(same)}; {cfg.out} differs in {diff[0]}")
        if not is_cifar(first.model) or first.shortcut not in ("", "A") or first.compile != "off":
            raise UserError("runs are trained together only for the CIFAR nets with option-A shortcuts")
        if first.amp == "fp16":
            # The grouped optimizer has no GradScaler: fp16 gradients would underflow unscaled.
            raise UserError("--amp fp16 is not supported for runs trained together (--seeds K); use --amp bf16 "
                            "or off, or train the seeds one at a time")
        self.runs = [Trainer(cfg, resume=r) for cfg, r in zip(configs, resume)]
        self.k = len(self.runs)
        lead = self.runs[0]
        if lead.dist.enabled:
            # The grouped net is not wrapped in DDP: ranks would drift apart silently.
            raise UserError("runs trained together use one process; start them without torchrun")
        self.device, self.amp_dtype = lead.device, lead.amp_dtype
        depth = cifar_depth(first.model)
        self.net = GroupedCifarNet(self.k, depth, lead.model.residual, lead.model.fc.out_features).to(self.device)
        self.template = lead.model.state_dict()
        self.net.load_state_dict(pack([t.model.state_dict() for t in self.runs]))
        params = dict(self.net.named_parameters())
        self.optimizer = GroupedSGD(params, self.k, first.momentum, first.weight_decay)
        # Momentum buffers of resumed runs, in the grouped layout.
        names = [n for n, _ in lead.model.named_parameters()]
        per_run = [t.optimizer.state_dict()["state"] for t in self.runs]
        if all(len(s) == len(names) for s in per_run):
            for i, name in enumerate(names):
                self.optimizer.buffers[_grouped_key(name)] = pack(
                    [{name: s[i]["momentum_buffer"].to(self.device)} for s in per_run])[_grouped_key(name)]

    def sync(self) -> None:
        """Copy the grouped weights and momentum back into each run's own model and optimizer."""
        states = unpack(self.net.state_dict(), self.template, self.k)
        names = [n for n, _ in self.runs[0].model.named_parameters()]
        have_momentum = all(self.optimizer.buffers[_grouped_key(n)] is not None for n in names)
        momenta = (unpack({_grouped_key(n): self.optimizer.buffers[_grouped_key(n)] for n in names},
                          {n: self.template[n] for n in names}, self.k) if have_momentum else None)
        for k, run in enumerate(self.runs):
            run.model.load_state_dict(states[k])
            if momenta is not None:
                for name, param in run.model.named_parameters():
                    run.optimizer.state[param] = {"momentum_buffer": momenta[k][name]}

    def step(self, batches: list[tuple[Tensor, Tensor]], lrs: list[float]) -> tuple[Tensor, Tensor]:
        x = torch.cat([b[0] for b in batches], dim=1)
        y = torch.stack([b[1] for b in batches], dim=1)  # (B, K)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            logits = self.net(x).float()  # (B, K, classes)
        losses = F.cross_entropy(logits.permute(0, 2, 1), y, reduction="none").mean(0)  # (K,)
        self.optimizer.zero_grad()
        losses.sum().backward()
        self.optimizer.step(torch.tensor(lrs, device=self.device))
        return losses.detach(), (logits.detach().argmax(2) != y).sum(0)

    def run(self, stop_after: int | None = None) -> list[dict[str, Any]]:
        starts = {t.state.step for t in self.runs}
        if len(starts) != 1:
            raise UserError(f"runs trained together must be at the same iteration, not {sorted(starts)}")
        ends = [t.begin(stop_after, show_bar=False) for t in self.runs]
        step, end = starts.pop(), ends[0]
        self.net.train()
        bar = tqdm(total=end, initial=step, desc=f"{self.k} x {self.runs[0].cfg.model}", unit="it", disable=None)
        consistent = True
        with StopSignals() as signals:
            try:
                while step < end:
                    lrs = [learning_rate(t.cfg, t.state, t.warmup) for t in self.runs]
                    batches = [t.data.train.batch(step) for t in self.runs]
                    consistent = False
                    losses, errors = self.step(batches, lrs)
                    step += 1
                    for t in self.runs:
                        t.state.step = step
                    consistent = True
                    synced = False

                    def sync_once() -> None:
                        nonlocal synced
                        if not synced:
                            self.sync()
                            synced = True

                    stop = [t.account(losses[k], errors[k], len(batches[k][1]), lrs[k], end, sync=sync_once,
                                      stop=signals.requested is not None) for k, t in enumerate(self.runs)]
                    bar.update(1)
                    if any(stop):
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                bar.close()
                saveable = consistent and not any(t.in_log_point for t in self.runs)
                if saveable:
                    self.sync()
                stopped = [t.interrupted(signals.requested or "SIGINT", saveable) for t in self.runs]
                raise stopped[0] from None
        bar.close()
        self.sync()
        return [t.finish() for t in self.runs]


def seed_configs(cfg: TrainConfig, seeds: int) -> list[TrainConfig]:
    """One config per seed cfg.seed .. cfg.seed+seeds-1, each in RUN_DIR/seed<N>."""
    return [dataclasses.replace(cfg, seed=cfg.seed + i, out=f"{cfg.out}/seed{cfg.seed + i}") for i in range(seeds)]
