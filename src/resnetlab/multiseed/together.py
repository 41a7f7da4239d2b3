"""What the training step updates when K runs train together: their stacked network and an SGD with a
learning rate per run: the `Trainee` (training/step.py) of K runs, as OneRun is of one (model, torch SGD).

The loss is the sum of the runs' losses, so each run's gradient, weight decay and momentum are its own;
`sync` copies the stacked weights and momenta back into each run's model and optimizer, whose checkpoints
are then exactly those of a run made alone.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from resnetlab.errors import UserError
from resnetlab.models import is_cifar
from resnetlab.multiseed.network import pack, stack, unpack


class RunsSGD:
    """torch.optim.SGD's update (momentum, dampening 0, weight decay) with a learning rate per run.

    d = g + wd * p;  buf = m * buf + d;  p -= lr_k * buf   (Nesterov: p -= lr_k * (d + m * buf))
    Hand-written because torch's SGD takes one learning rate per tensor, and a stacked tensor holds K runs.
    The buffers start as zeros (m * 0 + d = d: torch's first step, to the bit).
    """

    def __init__(self, params: dict[str, nn.Parameter], k: int, momentum: float, weight_decay: float,
                 factors: dict[str, float] | None = None, nesterov: bool = False,
                 decays: dict[str, float] | None = None) -> None:
        """factors: a parameter's lr over the run's (--head-lr's classifier), 1 where absent; decays: a
        parameter's own weight decay (--norm-weight-decay), `weight_decay` where absent."""
        self.params, self.k, self.momentum, self.nesterov = params, k, momentum, nesterov
        self.factors = {name: (factors or {}).get(name, 1.0) for name in params}
        self.decays = {name: (decays or {}).get(name, weight_decay) for name in params}
        self.buffers: dict[str, Tensor] = {name: torch.zeros_like(p) for name, p in params.items()}
        self.lrs = torch.zeros(k, device=next(iter(params.values())).device)  # read by the (compiled) update

    @torch.no_grad()
    def step(self) -> None:
        for name, p in self.params.items():
            d = p.grad.add(p, alpha=self.decays[name])
            buf = self.buffers[name].mul_(self.momentum).add_(d)
            lrs = self.lrs if self.factors[name] == 1.0 else self.lrs * self.factors[name]
            update = d.add(buf, alpha=self.momentum) if self.nesterov else buf
            p.view(self.k, -1).sub_(lrs[:, None] * update.view(self.k, -1))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params.values():
            p.grad = None


class Together:
    """K runs' models and torch SGD optimizers as one stacked network and one RunsSGD."""

    def __init__(self, models: list[nn.Module], optimizers: list[torch.optim.SGD], device: torch.device) -> None:
        group = optimizers[0].param_groups[0]
        self.models, self.optimizers, self.k = models, optimizers, len(models)
        self.template = models[0].state_dict()
        self.net = stack(models).to(device)
        groups = {id(p): g for g in optimizers[0].param_groups for p in g["params"]}
        factors = {name: groups[id(p)].get("lr_factor", 1.0) for name, p in models[0].named_parameters() if id(p) in groups}
        decays = {name: groups[id(p)]["weight_decay"] for name, p in models[0].named_parameters() if id(p) in groups}
        trained = {name: p for name, p in self.net.named_parameters() if p.requires_grad}  # not --freeze's
        self.optimizer = RunsSGD(trained, self.k, group["momentum"], group["weight_decay"],
                                 factors, group.get("nesterov", False), decays)
        self._load_momenta()

    def _load_momenta(self) -> None:
        """Momentum buffers of resumed runs, in the stacked layout."""
        names = [n for n, p in self.models[0].named_parameters() if p.requires_grad]  # the optimizers' order
        per_run = [o.state_dict()["state"] for o in self.optimizers]
        if not all(len(s) == len(names) for s in per_run):
            return  # new runs: zeros
        params = self.optimizer.params
        for i, name in enumerate(names):
            packed = pack([{name: s[i]["momentum_buffer"].to(params[name].device)} for s in per_run])[name]
            # In the parameter's own layout: buffers of channels_last weights (runs trained alone) are not
            # contiguous, and the update views buffer and weight alike.
            self.optimizer.buffers[name] = torch.empty_like(params[name]).copy_(packed.reshape(params[name].shape))

    def momenta(self) -> list[tuple[Tensor, Tensor]]:
        return [(self.optimizer.buffers[name], p) for name, p in self.optimizer.params.items()]

    def set_learning_rates(self, lrs: list[float]) -> None:
        self.optimizer.lrs.copy_(torch.tensor(lrs))

    def per_run(self, tensors: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        return unpack(tensors, {n: self.template[n] for n in tensors}, self.k)

    def stacked(self, states: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        return pack(states)

    def sync(self, lrs: list[float] | None) -> None:
        """Each run's model and optimizer as a run trained alone would hold them now."""
        states = unpack(self.net.state_dict(), self.template, self.k)
        names = list(self.optimizer.params)
        buffers = self.optimizer.buffers
        momenta = unpack({n: buffers[n] for n in names}, {n: self.template[n] for n in names}, self.k)
        for k, (model, optimizer) in enumerate(zip(self.models, self.optimizers)):
            model.load_state_dict(states[k])
            if lrs is not None:  # the run's own optimizer carries the lr it trains at, as one alone does
                for g in optimizer.param_groups:
                    g["lr"] = lrs[k] * g.get("lr_factor", 1.0)
            for name, param in model.named_parameters():
                if name in momenta[k]:  # frozen parameters have no momentum, as in a run alone
                    optimizer.state[param] = {"momentum_buffer": momenta[k][name]}


def check_together(configs: list, distributed: bool, same: tuple[str, ...]) -> None:
    """Refuse, before any run is built, runs (TrainConfigs) that cannot be stacked; `same`: the settings they
    must share (training/settings.py marks them)."""
    first = configs[0]
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
    if distributed:
        # The stacked net is not wrapped in DDP: ranks would drift apart silently.
        raise UserError("runs trained together use one process; start them without torchrun")
