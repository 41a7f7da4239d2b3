"""What the loop trains: the network of K runs (K = 1: the run's own model), its optimizer, and the
one training step.

With K > 1 the runs' models are stacked into one network of grouped convolutions (models/runs.py); the
loss is the sum of the runs' losses, so each run's gradient, weight decay and momentum are its own, and
RunsSGD gives each run its own learning rate. `sync()` copies the stacked weights and momenta back into
each run's model and optimizer, whose checkpoints are then exactly those of a run made alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnetlab.engine.config import TrainConfig
from resnetlab.engine.distributed import DistInfo
from resnetlab.engine.fastpath import FastPath
from resnetlab.engine.run import Run, model_options
from resnetlab.errors import UserError
from resnetlab.models import is_cifar
from resnetlab.models.runs import pack, stack, unpack


class RunsSGD:
    """torch.optim.SGD's update (momentum, dampening 0, weight decay) with a learning rate per run.

    d = g + wd * p;  buf = m * buf + d (buf = d at the first step);  p -= lr_k * buf
    Hand-written because torch's SGD takes one learning rate per tensor, and a stacked tensor holds K runs.
    """

    def __init__(self, params: dict[str, nn.Parameter], k: int, momentum: float, weight_decay: float) -> None:
        self.params, self.k, self.momentum, self.weight_decay = params, k, momentum, weight_decay
        self.buffers: dict[str, Tensor | None] = {name: None for name in params}
        self.lrs = torch.zeros(k, device=next(iter(params.values())).device)  # read by the (compiled) update

    @torch.no_grad()
    def step(self) -> None:
        for name, p in self.params.items():
            d = p.grad.add(p, alpha=self.weight_decay)
            buf = self.buffers[name]
            if buf is None:
                buf = self.buffers[name] = d.clone()
            else:
                buf.mul_(self.momentum).add_(d)
            p.view(self.k, -1).sub_(self.lrs[:, None] * buf.view(self.k, -1))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params.values():
            p.grad = None


def check_together(configs: list[TrainConfig], dist: DistInfo) -> None:
    """Refuse, before any run is built, runs that cannot be stacked."""
    first = configs[0]
    same = ("model", "data", "batch_size", "iters", "momentum", "weight_decay", "shortcut", "device", "amp")
    for cfg in configs[1:]:
        diff = [f for f in same if getattr(cfg, f) != getattr(first, f)]
        if diff:
            raise UserError(f"runs trained together must share {', '.join(same)}; {cfg.out} differs in {diff[0]}")
    if not is_cifar(first.model) or first.shortcut not in ("", "A"):
        raise UserError("runs are trained together only for the CIFAR nets with option-A shortcuts")
    if first.amp == "fp16":
        # One loss scale for K runs would skip every run's step when one overflows: no longer runs alone.
        raise UserError("--amp fp16 is not supported for runs trained together (--seeds K); use --amp bf16 "
                        "or off, or train the seeds one at a time")
    if dist.enabled:
        # The stacked net is not wrapped in DDP: ranks would drift apart silently.
        raise UserError("runs trained together use one process; start them without torchrun")


class Stack:
    def __init__(self, runs: list[Run], path: FastPath) -> None:
        self.runs, self.k = runs, len(runs)
        lead = runs[0]
        self.device, self.dist = lead.device, lead.dist
        if self.k == 1:
            self.net: nn.Module = lead.model
            self.optimizer = lead.optimizer
            if self.dist.enabled:
                ids = [self.device.index] if self.device.type == "cuda" else None
                self.net = nn.parallel.DistributedDataParallel(lead.model, device_ids=ids)
        else:
            cfg = lead.cfg
            self.template = lead.model.state_dict()
            self.net = stack([r.model for r in runs], cfg.model, **model_options(cfg, len(lead.data.classes)))
            self.net = self.net.to(self.device)
            self.optimizer = RunsSGD(dict(self.net.named_parameters()), self.k, cfg.momentum, cfg.weight_decay)
            self._load_momenta()
        # Momentum buffers start as zeros, not absent (m * 0 + g = g: the same first step, to the bit), so that
        # a compiled update compiles once instead of again at the second step, and so that every step, the
        # first included, changes the same tensors in place (what fastcheck saves and restores).
        if self.k > 1:
            for name, param in self.optimizer.params.items():
                if self.optimizer.buffers[name] is None:
                    self.optimizer.buffers[name] = torch.zeros_like(param)
        else:
            for group in self.optimizer.param_groups:
                for param in group["params"]:
                    self.optimizer.state[param].setdefault("momentum_buffer", torch.zeros_like(param))
        self._lrs: list[float] | None = None
        self.self_check: list[str] = []  # what fastcheck found, for the start-up lines and bench
        self.synced = True  # the runs' models hold the stacked weights (nothing trained yet)
        self.use(path)

    def use(self, path: FastPath) -> None:
        """Run the step in the precision and mode of `path` from now on (the runs' evaluations too)."""
        self.path, self.amp_dtype = path, path.amp
        for run in self.runs:
            run.amp_dtype = path.amp
        # fp16 needs a loss scale (only chosen on GPUs without bf16, one run at a time: see check_together).
        scaler = torch.amp.GradScaler(self.device.type, enabled=path.amp == torch.float16)
        state = self.runs[0].scaler_state
        if scaler.is_enabled() and self.k == 1 and state:
            scaler.load_state_dict(state)
        self.scaler = self.runs[0].scaler = scaler
        self.compiled_once = not path.compiled
        self._step = self._train_step
        if path.compiled:
            # The whole step as compiled code: forward and loss (with their backward, by AOTAutograd) and the
            # SGD update. The learning rate is a tensor the graphs read, so a schedule change recompiles nothing.
            if self.k == 1:
                for group in self.optimizer.param_groups:
                    if not isinstance(group["lr"], Tensor):
                        group["lr"] = torch.tensor(float(group["lr"]))
            self._step = torch.compile(self._train_step, mode=None if path.compile_mode == "default" else path.compile_mode)

    def momenta(self) -> list[tuple[Tensor | None, Tensor]]:
        """(momentum buffer or None, parameter) for every trained parameter."""
        if self.k > 1:
            return [(self.optimizer.buffers[name], p) for name, p in self.optimizer.params.items()]
        return [(self.optimizer.state[p].get("momentum_buffer"), p)
                for group in self.optimizer.param_groups for p in group["params"]]

    def state_tensors(self) -> list[Tensor]:
        """Every tensor a step changes in place: weights, BN statistics, momentum buffers."""
        return [t.detach() for t in self.net.state_dict(keep_vars=True).values()] + [b for b, _ in self.momenta()]

    def _load_momenta(self) -> None:
        """Momentum buffers of resumed runs, in the stacked layout."""
        names = [n for n, _ in self.runs[0].model.named_parameters()]
        per_run = [r.optimizer.state_dict()["state"] for r in self.runs]
        if all(len(s) == len(names) for s in per_run):
            params = self.optimizer.params
            for i, name in enumerate(names):
                packed = pack([{name: s[i]["momentum_buffer"].to(self.device)} for s in per_run])[name]
                # In the parameter's own layout: buffers of channels_last weights (runs trained alone) are
                # not contiguous, and the update views buffer and weight alike.
                self.optimizer.buffers[name] = torch.empty_like(params[name]).copy_(packed.reshape(params[name].shape))

    def set_learning_rates(self, lrs: list[float]) -> None:
        if lrs == self._lrs:  # they change a few times a run: no copy to the device at every step
            return
        self._lrs = list(lrs)
        if self.k > 1:
            self.optimizer.lrs.copy_(torch.tensor(lrs))
            return
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(lrs[0])
            else:
                group["lr"] = lrs[0]

    def step(self, batches: list[tuple[Tensor, Tensor]], lrs: list[float]) -> tuple[Tensor, Tensor]:
        """One SGD step of every run; returns each run's (loss, number of errors) as device tensors of
        shape (K,): no host synchronization."""
        x = batches[0][0] if self.k == 1 else torch.cat([b[0] for b in batches], dim=1)
        y = torch.stack([b[1] for b in batches], dim=1)  # (B, K)
        self.set_learning_rates(lrs)
        self.synced = False
        return self._step(x, y)

    def _train_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            logits = self.net(x).float().view(len(y), self.k, -1)  # (B, K, classes)
        losses = F.cross_entropy(logits.permute(0, 2, 1), y, reduction="none").mean(0)  # (K,)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses.sum()).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return losses.detach(), (logits.detach().argmax(2) != y).sum(0)

    def sync(self) -> None:
        """Copy the stacked weights and momenta back into each run's own model and optimizer, once per step
        however many runs ask (K = 1: the run's model is the trained one, nothing to copy)."""
        if self.k == 1 or self.synced:
            return
        self.synced = True
        states = unpack(self.net.state_dict(), self.template, self.k)
        names = [n for n, _ in self.runs[0].model.named_parameters()]
        buffers = self.optimizer.buffers
        momenta = (unpack({n: buffers[n] for n in names}, {n: self.template[n] for n in names}, self.k)
                   if all(buffers[n] is not None for n in names) else None)
        for k, run in enumerate(self.runs):
            run.model.load_state_dict(states[k])
            if self._lrs is not None:  # the run's own optimizer carries the lr it trains at, as one alone does
                for group in run.optimizer.param_groups:
                    group["lr"] = self._lrs[k]
            if momenta is not None:
                for name, param in run.model.named_parameters():
                    run.optimizer.state[param] = {"momentum_buffer": momenta[k][name]}
