"""Where the fp32 CIFAR step's convolution time goes, and whether the slowest part can be done another way.

Times, for each stage of the CIFAR ResNets (3x3 convolution, batch 128), oneDNN's forward, its backward for the
input and its backward for the weights, then four other ways to get the weights' gradient: channels-first
tensors, the batch in chunks of 32, and im2col + one GEMM (channels-first `unfold`; channels_last patches). Each
alternative is checked against oneDNN's result. Nothing else may run on the machine while it times.

Usage: python benchmarks/conv_backward.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

STAGES = ((16, 32), (32, 16), (64, 8))  # (channels, side) of the CIFAR ResNets' three stages


def best_seconds(fn, repeats: int = 10) -> float:
    for _ in range(3):
        fn()
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        rounds.append((time.perf_counter() - start) / repeats)
    return min(rounds)


def backward(go, x, w, mask):
    return torch.ops.aten.convolution_backward(go, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)


def weight_grad_unfold(go, x, w):
    cols = F.unfold(x, 3, padding=1)  # (N, C*9, H*W)
    return torch.einsum("nol,nkl->ok", go.flatten(2), cols).view(w.shape)


def weight_grad_patches(go, x, w):
    n, c, h, width = x.shape
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1).contiguous()  # (N, H+2, W+2, C)
    cols = padded.unfold(1, 3, 1).unfold(2, 3, 1).permute(0, 1, 2, 4, 5, 3).reshape(n * h * width, 9 * c)
    grads = go.permute(0, 2, 3, 1).reshape(n * h * width, -1)
    return (grads.t() @ cols).view(-1, 3, 3, c).permute(0, 3, 1, 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    torch.set_num_threads(p.parse_args().threads)
    for c, side in STAGES:
        cl = torch.channels_last
        x, go = (torch.randn(128, c, side, side).to(memory_format=cl) for _ in range(2))
        w = torch.randn(c, c, 3, 3).to(memory_format=cl)
        xf, gof, wf = x.contiguous(), go.contiguous(), w.contiguous()
        gflop = 2 * 128 * c * c * 9 * side * side / 1e9
        reference = backward(go, x, w, [False, True, False])[1]
        ways = {
            "forward": lambda: F.conv2d(x, w, padding=1),
            "input grad": lambda: backward(go, x, w, [True, False, False]),
            "weight grad": lambda: backward(go, x, w, [False, True, False]),
            "weight grad NCHW": lambda: backward(gof, xf, wf, [False, True, False]),
            "weight grad in 4 chunks": lambda: sum(backward(go[i:i + 32], x[i:i + 32], w, [False, True, False])[1]
                                                   for i in range(0, 128, 32)),
            "weight grad unfold+GEMM": lambda: weight_grad_unfold(gof, xf, w),
            "weight grad patches+GEMM": lambda: weight_grad_patches(go, x, w),
        }
        for name in ("weight grad unfold+GEMM", "weight grad patches+GEMM"):
            got = weight_grad_unfold(gof, xf, w) if "unfold" in name else weight_grad_patches(go, x, w)
            assert torch.allclose(got, reference, rtol=1e-4, atol=1e-3 * float(reference.abs().max())), name
        rates = {name: gflop / best_seconds(fn) for name, fn in ways.items()}
        print(f"{c} channels at {side}x{side}: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
              + " GFLOP/s", flush=True)


if __name__ == "__main__":
    main()
