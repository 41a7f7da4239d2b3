#!/usr/bin/env bash
# Does keeping freed memory in the process (runtime/memory.py) make the trainer's step faster? The allocator's
# settings are process-wide and cannot be undone inside one process, so each measurement is its own process
# (benchmarks/step_variants.py: the trainer's data path and step on the fast path `train` chooses, compile time
# apart), RESNETLAB_KEEP_FREED_MEMORY=0 and =1 alternated, the order swapped every round so that drift of the
# machine hits both alike. Prints every figure and the ratio of the medians.
# Nothing else may run. Usage: bash benchmarks/allocator.sh DATA [ROUNDS] [MODEL]  (~70 s a process on 2 AVX2 cores)
set -euo pipefail
DATA="${1:?usage: bash benchmarks/allocator.sh DATA [ROUNDS] [MODEL]}"
ROUNDS="${2:-4}"
MODEL="${3:-cifar_resnet20}"
PY="${PYTHON:-python}"
HERE="$(cd "$(dirname "$0")" && pwd)"
lscpu | grep -E "Model name" || true
measure() {  # $1: 0 or 1; prints images/s
  RESNETLAB_KEEP_FREED_MEMORY="$1" "$PY" "$HERE/step_variants.py" baseline --model "$MODEL" --data "$DATA" \
    --rounds 1 --steps 80 2>/dev/null | sed -n 's/^round 1 baseline: \([0-9,]*\) images\/s.*/\1/p' | tr -d ,
}
declare -a off on
for ((r = 1; r <= ROUNDS; r++)); do
  order=$([ $((r % 2)) = 1 ] && echo "0 1" || echo "1 0")
  for keep in $order; do
    rate="$(measure "$keep")"
    echo "round $r RESNETLAB_KEEP_FREED_MEMORY=$keep: $rate images/s"
    if [ "$keep" = 1 ]; then on+=("$rate"); else off+=("$rate"); fi
  done
done
"$PY" - "${off[*]}" "${on[*]}" <<'EOF'
import statistics, sys
off, on = ([float(v) for v in arg.split()] for arg in sys.argv[1:3])
print(f"{'allocator as it is':>22}: median {statistics.median(off):.0f} images/s ({', '.join(f'{v:.0f}' for v in off)})")
print(f"{'freed memory kept':>22}: median {statistics.median(on):.0f} images/s ({', '.join(f'{v:.0f}' for v in on)}), "
      f"{statistics.median(on) / statistics.median(off):.3f}x; kept faster in "
      f"{sum(b > a for a, b in zip(off, on))} of {len(on)} rounds")
EOF
