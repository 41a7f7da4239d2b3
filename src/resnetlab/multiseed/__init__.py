"""Several seeds of one CIFAR network trained as one network of grouped convolutions: an adapter that the
training step (training/step.py) takes in place of a single run's model and optimizer. The networks of
models/ know nothing of it."""

from resnetlab.multiseed.network import RunsLinear, RunsZeroPad, pack, stack, unpack
from resnetlab.multiseed.together import RunsSGD, Together, check_together

__all__ = ["RunsLinear", "RunsSGD", "RunsZeroPad", "Together", "check_together", "pack", "stack", "unpack"]
