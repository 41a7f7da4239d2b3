#!/usr/bin/env bash
# One device call that checks and times everything of issue 6 on a lent GPU (H100/H200), ~8 minutes.
# Prepare here:   python benchmarks/pack_images.py pack ../shared/data/cifar10-jpeg/train benchmarks/data/cifar10-train.npz
#                 echo /benchmarks/data/ >> .git/info/exclude
# Run (device tool): command "bash benchmarks/gpu_check.sh", carry ["benchmarks/data"], timeout_s 600.
# Results land in $OUT/<card>.jsonl (copy them to benchmarks/results/) and $OUT/log.txt.
set -uo pipefail
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
export PYTHONPATH="$PWD/src" RESNETLAB_CACHE=/tmp/rlcache PYTHONUNBUFFERED=1
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 benchmarks/pack_images.py unpack benchmarks/data/cifar10-train.npz /tmp/cifar10-jpeg/train
DATA=/tmp/cifar10-jpeg
python3 -m resnetlab data inspect $DATA                      # decodes once, caches
B="python3 -m resnetlab bench --data $DATA --save $OUT --steps 100"
# 1. the pipeline, and ResNet-20/56 eager vs the standard loop (same run)
$B --what pipeline
for m in cifar_resnet20 cifar_resnet56; do
  $B --what train --model $m
  for mode in default reduce-overhead max-autotune; do timeout 240 $B --what train --model $m --compile $mode; done
done
# 2. many runs at once: 5 seeds of ResNet-110 together vs 1
$B --what train --model cifar_resnet110 --steps 50
$B --what train --model cifar_resnet110 --steps 50 --seeds 5
# 3. ResNet-50, 224x224, batch 256 vs torchvision eager bf16 channels_last
$B --what imagenet --steps 30
timeout 300 $B --what imagenet --steps 30 --compile max-autotune
# 4. correctness: the same seed, eager fp32 vs the default CUDA path, 2,000 iterations each
for amp in off bf16; do
  timeout 200 python3 -m resnetlab train --model cifar_resnet20 --data $DATA --out /tmp/runs/amp-$amp --iters 2000 \
    --eval-every 1000 --amp $amp --channels-last $([ $amp = off ] && echo off || echo on)
  cp /tmp/runs/amp-$amp/metrics.jsonl "$OUT/metrics-amp-$amp.jsonl"
done
