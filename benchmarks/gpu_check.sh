#!/usr/bin/env bash
# One device call (<= 8 minutes) that times every mode of the fast path on a lent GPU (H100/H200) against
# eager resnetlab and the standard loop, in the same runs, and checks that the fast path trains as well.
# Prepare here:   python benchmarks/pack_images.py pack ../shared/data/cifar10-jpeg/train benchmarks/data/cifar10-train.npz
#                 echo /benchmarks/data/ >> .git/info/exclude
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
# 1. each bench line: baseline loop, eager resnetlab and the fast path in one run, compile time apart
$B --what pipeline
for m in cifar_resnet20 cifar_resnet56; do
  for mode in default reduce-overhead max-autotune; do
    [ "$(left)" -gt 60 ] && timeout 150 $B --what train --model $m --fast on --compile $mode
  done
done
# 2. many runs at once: 5 seeds of ResNet-110 together vs 1, eager and compiled
for fast in off on; do
  [ "$(left)" -gt 60 ] && timeout 150 $B --what train --model cifar_resnet110 --steps 50 --fast $fast
  [ "$(left)" -gt 60 ] && timeout 150 $B --what train --model cifar_resnet110 --steps 50 --seeds 5 --fast $fast
done
# 3. ResNet-50, 224x224, batch 256 vs torchvision eager bf16 channels_last
[ "$(left)" -gt 60 ] && timeout 100 $B --what imagenet --steps 30 --fast off
[ "$(left)" -gt 90 ] && timeout 150 $B --what imagenet --steps 30 --fast on --compile max-autotune
# 4. correctness: the same seed for 2,000 iterations, eager fp32 against the fast path (compiled, bf16)
for fast in off on; do
  amp=$([ $fast = off ] && echo off || echo bf16)
  [ "$(left)" -gt 40 ] && timeout "$(left)" python3 -m resnetlab train --model cifar_resnet20 --data $DATA \
    --out /tmp/runs/fast-$fast --iters 2000 --eval-every 1000 --fast $fast --amp $amp
  cp /tmp/runs/fast-$fast/metrics.jsonl "$OUT/metrics-fast-$fast.jsonl" 2>/dev/null
done
echo "done in $(( $(date +%s) - START )) s"
