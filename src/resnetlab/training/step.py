"""The training step: forward, loss, backward and the SGD update (`TrainingStep.sgd_step`), for one run or for K
runs trained together, in the precision and compile mode the fast path chose.

What a step updates is a `Trainee`: `OneRun` (a run's model, in DDP under torchrun, and its torch SGD) or
`multiseed.Together` (K runs' models stacked into one network of grouped convolutions, with a per-run SGD).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnetlab.data.batch import Batch
from resnetlab.multiseed import RunsSGD, Together
from resnetlab.runtime.distributed import DistInfo
from resnetlab.training import averagers
from resnetlab.training.fastpath import FastPath
from resnetlab.training.run import Run


class Trainee(Protocol):
    """What a step trains: the network it runs forward and the optimizer that updates it."""

    k: int  # the runs trained: the network's output holds k classifiers' logits side by side
    net: nn.Module
    optimizer: torch.optim.SGD | RunsSGD  # zero_grad() and step(), as GradScaler.step calls them

    def momenta(self) -> list[tuple[Tensor, Tensor]]:
        """(momentum buffer, parameter) for every trained parameter."""

    def set_learning_rates(self, lrs: list[float]) -> None:
        """Each run's learning rate from now on (one per run)."""

    def sync(self, lrs: list[float] | None) -> None:
        """Each run's own model and optimizer brought up to date with the trained network (for its checkpoint)."""

    def per_run(self, tensors: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        """Tensors named as the trained network's state (an averager's) as each run's own."""

    def stacked(self, states: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Each run's tensors (a resumed averager's) in the trained network's layout."""


def batch_loss(logits: Tensor, labels: Tensor, targets: Tensor | None, label_smoothing: float) -> Tensor:
    """Each run's mean cross-entropy, (K,), from logits (B, K, classes): against the hard labels (B, K), or
    against the soft targets (B, K, classes) a batch transform made; label smoothing applies to either."""
    target = labels if targets is None else targets.permute(0, 2, 1)
    return F.cross_entropy(logits.permute(0, 2, 1), target, reduction="none", label_smoothing=label_smoothing).mean(0)


class OneRun:
    """The Trainee of one run: its model (in DDP under torchrun) and its torch SGD."""

    k = 1

    def __init__(self, run: Run, dist: DistInfo, device: torch.device) -> None:
        self.net: nn.Module = run.model
        self.optimizer = run.optimizer
        if dist.enabled:
            self.net = nn.parallel.DistributedDataParallel(run.model, device_ids=[device.index] if device.type == "cuda" else None)
        # Momentum buffers start as zeros, not absent (m * 0 + g = g: the same first step, to the bit), so that
        # a compiled update compiles once instead of again at the second step, and so that every step, the
        # first included, changes the same tensors in place (what fastcheck saves and restores).
        for group in self.optimizer.param_groups if isinstance(self.optimizer, torch.optim.SGD) else ():
            for param in group["params"]:
                self.optimizer.state[param].setdefault("momentum_buffer", torch.zeros_like(param))

    def momenta(self) -> list[tuple[Tensor, Tensor]]:
        return [(self.optimizer.state[p]["momentum_buffer"], p)
                for group in self.optimizer.param_groups for p in group["params"]]

    def set_learning_rates(self, lrs: list[float]) -> None:
        """The schedule's lr, times each group's factor (--head-lr: the classifier's own over --lr)."""
        for group in self.optimizer.param_groups:
            lr = lrs[0] * group.get("lr_factor", 1.0)
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def sync(self, lrs: list[float] | None) -> None:
        """The run's model is the trained one: nothing to copy."""

    def per_run(self, tensors: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        return [{k: v.clone() for k, v in tensors.items()}]

    def stacked(self, states: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        return states[0]


class TrainingStep:
    """The step of the runs being trained (one, or K together), in the precision and mode of the fast path:
    `train_step(batches, lrs)` trains one step and returns each run's loss and number of errors."""

    def __init__(self, runs: list[Run], path: FastPath) -> None:
        self.runs, self.k = runs, len(runs)
        lead = runs[0]
        self.label_smoothing = lead.cfg.label_smoothing
        self.device, self.dist = lead.device, lead.dist
        self.trainee: Trainee = (OneRun(lead, self.dist, self.device) if self.k == 1 else
                                 Together([r.model for r in runs], [r.optimizer for r in runs], self.device))
        self.net, self.optimizer = self.trainee.net, self.trainee.optimizer
        # --model-ema: over the run's own model (not DDP's wrapper), or over K runs' stacked network
        self.averagers = averagers.build(lead.model if self.k == 1 else self.net, lead.cfg)
        self._restore_averages()
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
        self._step = self.sgd_step
        if path.compiled:
            # The whole step as compiled code: forward and loss (with their backward, by AOTAutograd) and the
            # SGD update. The learning rate is a tensor the graphs read, so a schedule change recompiles nothing.
            for group in getattr(self.optimizer, "param_groups", []):  # torch SGD's; RunsSGD's lrs are a tensor
                if not isinstance(group["lr"], Tensor):
                    group["lr"] = torch.tensor(float(group["lr"]))
            self._step = torch.compile(self.sgd_step, mode=None if path.compile_mode == "default" else path.compile_mode)

    def momenta(self) -> list[tuple[Tensor, Tensor]]:
        """(momentum buffer, parameter) for every trained parameter."""
        return self.trainee.momenta()

    def state_tensors(self) -> list[Tensor]:
        """Every tensor a step changes in place: weights, BN statistics, momentum buffers, averages."""
        return ([t.detach() for t in self.net.state_dict(keep_vars=True).values()] + [b for b, _ in self.momenta()]
                + [t for a in self.averagers for t in a.tensors()])

    def _restore_averages(self) -> None:
        """A resumed run's averages (last.pt's `averaged`), in the trained network's layout."""
        for averager in self.averagers:
            states = [run.averaged.get(averager.name) for run in self.runs]
            if all(state is not None for state in states):
                stacked = self.trainee.stacked(states)
                with torch.no_grad():
                    for name, tensor in averager.average.items():
                        tensor.copy_(stacked[name].reshape(tensor.shape))

    def set_learning_rates(self, lrs: list[float]) -> None:
        if lrs == self._lrs:  # they change a few times a run: no copy to the device at every step
            return
        self._lrs = list(lrs)
        self.trainee.set_learning_rates(lrs)

    def __call__(self, batches: list[Batch], lrs: list[float], step: int | None = None) -> tuple[Tensor, Tensor]:
        """One SGD step of every run; returns each run's (loss, number of errors) as device tensors of
        shape (K,): no host synchronization. `step`: how many steps are done after this one (the averagers
        update at the steps they choose; None: a step outside the run's count, e.g. the bench's)."""
        x = batches[0].images if self.k == 1 else torch.cat([b.images for b in batches], dim=1)
        y = torch.stack([b.labels for b in batches], dim=1)  # (B, K)
        soft = None if batches[0].targets is None else torch.stack([b.targets for b in batches], dim=1)
        self.set_learning_rates(lrs)
        self.synced = False
        out = self._step(x, y) if soft is None else self._step(x, y, soft)
        for averager in self.averagers if step is not None else ():
            averager.after_step(step)
        return out

    def sgd_step(self, x: Tensor, y: Tensor, soft: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The step itself: forward (autocast to the path's precision), cross-entropy per run, backward, SGD.
        x: (B, C, H, W) with the K runs' images side by side on channels; y: (B, K); soft: (B, K, classes)."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            logits = self.net(x).float().view(len(y), self.k, -1)  # (B, K, classes)
        losses = batch_loss(logits, y, soft, self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses.sum()).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return losses.detach(), (logits.detach().argmax(2) != y).sum(0)

    def sync(self) -> None:
        """Each run's own model and optimizer brought up to date, once per step however many runs ask."""
        if self.synced:
            return
        self.synced = True
        self.trainee.sync(self._lrs)
        for averager in self.averagers:
            for run, state in zip(self.runs, self.trainee.per_run(averager.average)):
                run.averaged[averager.name] = state
