"""Measuring resnetlab: throughput against the standard PyTorch loop, and the step against the machine's ceiling."""

from resnetlab.bench.roofline import roofline
from resnetlab.bench.throughput import Options, throughput

__all__ = ["Options", "roofline", "throughput"]
