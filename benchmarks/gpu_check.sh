#!/usr/bin/env bash
# One device call (<= 8 minutes) that times the fast path on a lent GPU (H100/H200) against eager resnetlab and
# the standard loop, in the same runs, and checks that the fastest path trains as well.
# Prepare here:   python benchmarks/pack_images.py pack ../shared/data/cifar10-jpeg/train benchmarks/data/cifar10-train.npz --every 2
#                 echo /benchmarks/data/ >> .git/info/exclude
#   The tracked tree travels as it is: finished runs keep final weights only (`resnetlab slim`), and
#   tests/experiments/test_slim.py keeps the tree under 40 MB: with half the images (~23 MB) within the 64 MiB
#   a device call carries.
# Run (device tool): command "bash benchmarks/gpu_check.sh", carry ["benchmarks/data"], timeout_s 540.
# Results land in $OUT/<card>.jsonl (copy them to benchmarks/results/) and $OUT/log.txt; runs in $OUT/*.jsonl.
# Runs on the device's own python3 (torch 2.11, tqdm, matplotlib, numpy): resnetlab from src/, nothing installed.
set -uo pipefail
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
export PYTHONPATH="$PWD/src" RESNETLAB_CACHE=/tmp/rlcache PYTHONUNBUFFERED=1
exec > >(tee "$OUT/log.txt") 2>&1
START=$(date +%s)
left() { echo $(( 470 - ($(date +%s) - START) )); }   # seconds left of the 8 minutes
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 benchmarks/pack_images.py unpack benchmarks/data/cifar10-train.npz /tmp/cifar10-jpeg/train
DATA=/tmp/cifar10-jpeg
python3 -m resnetlab data inspect $DATA                      # decodes once, caches
B="python3 -m resnetlab bench --data $DATA --save $OUT --steps 100"
# Ordered by what is still unknown (benchmarks/results/gpu-check-H200-2026-11-30.txt measured the pipeline and
# ResNet-20/56 with the default mode, ResNet-20 with reduce-overhead; max-autotune outlasted 150 s on ResNet-20).
# 1. correctness: the same seed for 2,000 iterations, eager fp32 against CUDA graphs (reduce-overhead, bf16), with
#    evaluations between the graphed steps: the fastest measured path must train as well before `auto` takes it
for fast in off on; do
  args=$([ $fast = off ] && echo "--amp off" || echo "--amp bf16 --compile reduce-overhead")
  [ "$(left)" -gt 60 ] && timeout 200 python3 -m resnetlab train --model cifar_resnet20 --data $DATA \
    --out /tmp/runs/fast-$fast --iters 2000 --eval-every 1000 --fast $fast $args
  cp /tmp/runs/fast-$fast/metrics.jsonl "$OUT/metrics-fast-$fast.jsonl" 2>/dev/null
done
# 2. CUDA graphs at depth 56, where the default compile mode was slower than eager (5,584 vs 6,287 images/s)
[ "$(left)" -gt 90 ] && timeout 200 $B --what train --model cifar_resnet56 --fast on --compile reduce-overhead
# 3. many runs at once: 5 seeds of ResNet-110 together vs 1, eager
for seeds in 1 5; do
  [ "$(left)" -gt 40 ] && timeout 90 $B --what train --model cifar_resnet110 --steps 50 --seeds $seeds --fast off
done
# 4. ResNet-50, 224x224, batch 256 vs torchvision eager bf16 channels_last
[ "$(left)" -gt 40 ] && timeout "$(left)" $B --what imagenet --steps 30 --fast off
echo "done in $(( $(date +%s) - START )) s"
