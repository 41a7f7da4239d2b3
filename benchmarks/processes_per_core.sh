#!/usr/bin/env bash
# Does one process per core pay for a whole run on a small CPU? One `train` with 2 threads against torchrun's
# 2 one-thread processes (gloo all-reduce, half the batch each), eager bf16 where native (--fast off: no compile
# time), evaluation and checkpoints out of the timed seconds (summary.json's train_seconds). Nothing else may run.
# Usage: bash benchmarks/processes_per_core.sh DATA [OUT]   (about 4 minutes on 2 AVX-512 cores, ~20 on AVX2;
#        SPECS="cifar_resnet20 250" for one network and iteration count)
set -euo pipefail
DATA="${1:?usage: bash benchmarks/processes_per_core.sh DATA [OUT]}"
OUT="${2:-$(mktemp -d)}"; mkdir -p "$OUT"
PY="${PYTHON:-python}"
lscpu | grep -E "Model name" || true
IFS=';' read -ra SPEC_LIST <<< "${SPECS:-cifar_resnet20 500;cifar_resnet56 200}"
for spec in "${SPEC_LIST[@]}"; do
  set -- $spec
  common=(--model "$1" --data "$DATA" --iters "$2" --fast off --eval-every 100000 --log-every 100)
  rm -rf "$OUT/one-$1" "$OUT/two-$1"
  OMP_NUM_THREADS=2 "$PY" -m resnetlab train "${common[@]}" --out "$OUT/one-$1" > "$OUT/one-$1.log" 2>&1
  OMP_NUM_THREADS=1 "$PY" -m torch.distributed.run --standalone --nproc-per-node 2 -m resnetlab train "${common[@]}" \
    --out "$OUT/two-$1" > "$OUT/two-$1.log" 2>&1
  for way in one two; do
    "$PY" -c "import json, sys; d = json.load(open(sys.argv[1] + '/summary.json'))
batch = json.load(open(sys.argv[1] + '/config.json'))['batch_size']  # the global batch, all processes together
print(sys.argv[2], d['model'], d['precision'], d['mode'], round(d['iterations'] * batch / d['train_seconds']), 'images/s')" \
      "$OUT/$way-$1" "$([ $way = one ] && echo '1 process x 2 threads:' || echo '2 processes x 1 thread:')"
  done
done
